# ruff: noqa: E501  (each row is one prompt: long lines are the data)
"""Writes secrets.jsonl and innocent.jsonl beside this file: `python tests/unit/data/make_secrets.py`.

Every credential is made up here from a seeded random generator, in its provider's real shape, so none
was ever valid; the texts are what an agent sends (a .env it read, a failing curl, a config file).
innocent.jsonl is what agents send all day about credentials without carrying one. Rewriting this
file's rows reshuffles every value; test_secrets.py measures llm_cache/secrets.py against both.
"""

import base64
import json
import random
import string
from pathlib import Path

rng = random.Random(20240611)
AN = string.ascii_letters + string.digits
def r(n, alphabet=AN): return "".join(rng.choice(alphabet) for _ in range(n))
def hexs(n): return r(n, "0123456789abcdef")
def up(n): return r(n, string.ascii_uppercase + string.digits)
def b64(n): return r(n, AN + "+/")
def url(n): return r(n, AN + "-_")
def b64bytes(n): return base64.b64encode(rng.randbytes(n)).decode()
def b64url(raw: bytes) -> str: return base64.urlsafe_b64encode(raw).decode().rstrip("=")
def jwt(payload: dict) -> str:
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    return f"{head}.{b64url(json.dumps(payload).encode())}.{b64url(rng.randbytes(32))}"
def pem(kind: str, n: int = 600) -> str:
    body = b64bytes(n)
    return "\n".join([f"-----BEGIN {kind}-----", *[body[i:i + 64] for i in range(0, len(body), 64)], f"-----END {kind}-----"])

aws_id, aws_secret = "AKIA" + up(16), b64(40)
aws_id2, aws_secret2 = "ASIA" + up(16), b64(40)
SECRETS = [
    # LLM providers
    ("openai", f"Here is my .env, why does the client say 401?\nOPENAI_API_KEY=sk-proj-{url(156)}\nMODEL=gpt-4o"),
    ("openai", f"client = OpenAI(api_key=\"sk-{r(48)}\")\nresp = client.chat.completions.create(model='gpt-4o-mini', messages=msgs)"),
    ("anthropic", f"curl https://api.anthropic.com/v1/messages -H 'x-api-key: sk-ant-api03-{url(93)}AA' -H 'anthropic-version: 2023-06-01'"),
    ("anthropic", f"My key sk-ant-api03-{url(93)}AA stopped working after I rotated it, is there a cache somewhere?"),
    ("openrouter", f"export OPENROUTER_API_KEY=sk-or-v1-{hexs(64)}\npython agent.py --model anthropic/claude-3.5-sonnet"),
    ("groq", f"from groq import Groq\nclient = Groq(api_key='gsk_{r(52)}')"),
    ("xai", f"XAI_API_KEY=xai-{r(80)}"),
    ("replicate", f"Set REPLICATE_API_TOKEN to r8_{r(37)} and run the flux model"),
    ("google-api-key", f"const map = new google.maps.Map(el, {{ key: 'AIza{url(35)}' }});"),
    ("google-api-key", f"GET https://generativelanguage.googleapis.com/v1beta/models/gemini-pro:generateContent?key=AIza{url(35)} returns 403"),
    ("huggingface", f"I logged in with huggingface-cli login and pasted hf_{r(34, string.ascii_letters)} but the download of meta-llama still fails"),
    ("huggingface", f"HF_TOKEN=hf_{r(34, string.ascii_letters)}"),
    # cloud
    ("aws-access-key-id", f"aws configure set aws_access_key_id {aws_id}"),
    ("aws-secret-access-key", f"[default]\naws_access_key_id = {aws_id}\naws_secret_access_key = {aws_secret}\nregion = eu-west-1"),
    ("aws-secret-access-key", f"The deploy fails with SignatureDoesNotMatch. I'm using the secret access key {aws_secret2} for the ci user, is the slash a problem?"),
    ("aws-secret-access-key", f"boto3.client('s3', aws_access_key_id=AK, aws_secret_access_key='{b64(40)}')"),
    ("aws-secret-access-key", f"my aws creds: {aws_id2} / {b64(40)} (session token expired?)"),
    ("aws-secret-access-key", f"AWS_SECRET_ACCESS_KEY: {b64(40)}"),
    ("azure-storage", f"DefaultEndpointsProtocol=https;AccountName=proddata;AccountKey={b64bytes(64)};EndpointSuffix=core.windows.net"),
    ("azure-storage", f"az storage blob upload --account-name logs --account-key \"{b64bytes(64)}\" -f out.json"),
    ("azure-sas", f"https://proddata.blob.core.windows.net/backups/db.bak?sv=2022-11-02&ss=b&srt=o&sp=r&se=2025-01-01T00:00:00Z&sig={b64bytes(32).replace('+', '%2B').replace('/', '%2F').replace('=', '%3D')}"),
    ("azure-servicebus", f"Endpoint=sb://orders.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={b64bytes(32)}"),
    ("gcp-service-account", json.dumps({"type": "service_account", "project_id": "acme-prod", "private_key_id": hexs(40), "private_key": pem("PRIVATE KEY", 900) + "\n", "client_email": "ci@acme-prod.iam.gserviceaccount.com"}, indent=2)),
    ("digitalocean", f"doctl auth init -t dop_v1_{hexs(64)}"),
    # code hosting and packages
    ("github", f"git remote set-url origin https://ghp_{r(36)}@github.com/acme/api.git"),
    ("github", f"GITHUB_TOKEN=github_pat_11{up(20)}_{r(59)}"),
    ("github", f"Authorization: token gho_{r(36)}"),
    ("gitlab", f"curl --header \"PRIVATE-TOKEN: glpat-{url(20)}\" https://gitlab.com/api/v4/projects"),
    ("gitlab", f"the runner registers with glrt-{url(20)} but jobs stay pending"),
    ("npm", f"//registry.npmjs.org/:_authToken=npm_{r(36)}"),
    ("pypi", f"[pypi]\n  username = __token__\n  password = pypi-AgEIcHlwaS5vcmc{url(70)}"),
    ("url-credentials", f"git clone https://deploy-bot:{r(20)}@git.internal.acme.io/platform/infra.git"),
    # chat, mail, payments
    ("slack", f"SLACK_BOT_TOKEN=xoxb-{rng.randint(10**11, 10**12)}-{rng.randint(10**12, 10**13)}-{r(24)}"),
    ("slack", f"requests.post('https://hooks.slack.com/services/T{up(8)}/B{up(10)}/{r(24)}', json={{'text': msg}})"),
    ("slack", f"app token xapp-1-A{up(10)}-{rng.randint(10**12, 10**13)}-{hexs(64)}"),
    ("discord", f"bot.run('{b64url(str(rng.randint(10**17, 10**18)).encode())}.{url(6)}.{url(38)}')"),
    ("discord", f"Discord webhook: https://discord.com/api/webhooks/{rng.randint(10**17, 10**18)}/{url(68)}"),
    ("telegram", f"TELEGRAM_BOT_TOKEN={rng.randint(10**8, 10**9)}:AA{url(33)}"),
    ("stripe", f"stripe.api_key = \"sk_live_51{r(97)}\""),
    ("stripe", f"Can you check why refunds fail? I'm calling it with sk_live_{r(24)} from the worker."),
    ("stripe", f"restricted key rk_live_51{r(97)} only has charges:read"),
    ("stripe", f"STRIPE_WEBHOOK_SECRET=whsec_{r(32)}"),
    ("twilio", f"client = Client('AC{hexs(32)}', '{hexs(32)}')\nclient.messages.create(to='+15558675310', from_='+15017122661', body='hi')"),
    ("twilio", f"TWILIO_ACCOUNT_SID=AC{hexs(32)}\nTWILIO_AUTH_TOKEN={hexs(32)}"),
    ("sendgrid", f"sg = SendGridAPIClient('SG.{url(22)}.{url(43)}')"),
    ("mailgun", f"MAILGUN_API_KEY=key-{hexs(32)}"),
    ("shopify", f"X-Shopify-Access-Token: shpat_{hexs(32)}"),
    # tokens and keys
    ("jwt", jwt({"sub": "user_8812", "email": "dana@acme.io", "iat": 1718000000, "exp": 1718086400, "role": "admin"})),
    ("jwt", f"Why is this token rejected? {jwt({'sub': '42', 'scope': 'read:orders', 'exp': 1718086400})}"),
    ("bearer", f"Authorization: Bearer {url(40)}"),
    ("bearer", f"curl -H \"Authorization: Bearer {jwt({'sub': 'svc-billing', 'exp': 1718086400})}\" https://api.acme.io/v2/invoices"),
    ("basic-auth", f"GET /metrics HTTP/1.1\nHost: grafana.internal\nAuthorization: Basic {base64.b64encode(b'admin:Gr4fana!prod').decode()}"),
    ("basic-auth", f"curl -u admin:{r(14)} https://jenkins.acme.io/job/deploy/build"),
    ("vault", f"export VAULT_TOKEN=hvs.{url(90)}"),
    ("terraform-cloud", f"credentials \"app.terraform.io\" {{\n  token = \"{r(14)}.atlasv1.{url(67)}\"\n}}"),
    ("age", f"# created: 2024-05-01\nAGE-SECRET-KEY-1{up(58)}"),
    ("linear", f"LINEAR_API_KEY=lin_api_{r(40)}"),
    ("doppler", f"DOPPLER_TOKEN=dp.st.prd.{r(43)}"),
    # private keys
    ("pem-private-key", "Convert this to PKCS8 please:\n" + pem("RSA PRIVATE KEY")),
    ("pem-private-key", pem("EC PRIVATE KEY", 120)),
    ("pem-private-key", "```\n" + pem("ENCRYPTED PRIVATE KEY", 1200) + "\n```"),
    ("ssh-private-key", "cat ~/.ssh/id_ed25519\n" + pem("OPENSSH PRIVATE KEY", 300)),
    ("pgp-private-key", "gpg --armor --export-secret-keys ops@acme.io\n" + pem("PGP PRIVATE KEY BLOCK", 1200).replace("-----BEGIN PGP PRIVATE KEY BLOCK-----\n", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n")),
    ("kubeconfig", f"users:\n- name: admin\n  user:\n    client-certificate-data: {base64.b64encode(pem('CERTIFICATE').encode()).decode()[:200]}\n    client-key-data: {base64.b64encode(pem('RSA PRIVATE KEY').encode()).decode()}"),
    # database and connection strings
    ("database-url", f"DATABASE_URL=postgres://app_user:{r(16)}@db.prod.internal:5432/orders"),
    ("database-url", "postgres://user:pass@host:5432/db"),
    ("database-url", f"engine = create_engine(\"mysql+pymysql://root:{r(12)}!@10.0.3.17/analytics\")"),
    ("database-url", f"MONGO_URI=mongodb+srv://admin:{r(18)}@cluster0.ab1cd.mongodb.net/app?retryWrites=true"),
    ("database-url", f"redis-cli -u redis://default:{r(24)}@redis-12345.c1.us-east-1-2.ec2.cloud.redislabs.com:12345"),
    ("database-url", f"CELERY_BROKER_URL=amqp://celery:{r(12)}@rabbitmq:5672//"),
    ("jdbc", f"spring.datasource.url=jdbc:postgresql://db:5432/shop\nspring.datasource.username=shop\nspring.datasource.password={r(10)}#1"),
    # generic assignments
    ("dotenv", f"DB_HOST=db.internal\nDB_USER=app\nDB_PASS={r(14)}\nDB_NAME=app"),
    ("dotenv", f"DJANGO_SECRET_KEY=django-insecure-{r(50, string.ascii_lowercase + string.digits + '!@#$%^&*(-_=+)')}"),
    ("dotenv", f"SECRET_KEY={hexs(64)}"),
    ("dotenv", f"JWT_SECRET={r(32)}"),
    ("dotenv", f"OPENAI_KEY={r(32)}"),
    ("password", "password=hunter2"),
    ("password", "The login works with user admin and password Tr0ub4dor&3 but not with SSO."),
    ("password", "mysql -h 127.0.0.1 -u root -pS3cureP4ss! shop < dump.sql"),
    ("password", "config:\n  smtp:\n    user: alerts@acme.io\n    password: \"qu1ck-Br0wn-f0x\""),
    ("password", '{"username": "svc_etl", "password": "Xy7#kq2LpZ"}'),
    ("password", "the admin password is Summer2024! -- please don't share"),
    ("password", "machine api.acme.io login deploy password 7hG2kL9qPz"),
    ("password", "docker login registry.acme.io -u ci -p 9fKd82jLqX1"),
    ("api-key", "headers = {\"X-API-Key\": \"a7Bf93kD2mQx81ZpL4cV\"}"),
    ("api-key", "DATADOG_API_KEY=3c0f5a8e2b7d4f6a9c1e0b2d4f6a8c0e"),
    ("client-secret", f"GOOGLE_CLIENT_SECRET=GOCSPX-{url(28)}"),
    ("client-secret", f"oauth:\n  client_id: 8812-acme.apps.googleusercontent.com\n  client_secret: {r(24)}"),
    ("xml-password", "<server>\n  <id>nexus</id>\n  <username>deploy</username>\n  <password>Wint3r!sComing</password>\n</server>"),
    ("password", "const pool = new Pool({ host: 'db', user: 'app', password: 'n0t-s0-s3cret', port: 5432 })"),
    ("password", "'mysql' => [\n    'username' => 'forge',\n    'password' => 'Sup3rS3cret',\n],"),
    ("connection-string", 'db, err := sql.Open("postgres", "host=db user=app password=Pg!2024pass dbname=app sslmode=disable")'),
    ("connection-string", "Server=tcp:acme.database.windows.net,1433;Initial Catalog=app;User ID=sa;Password=Xq8!vT2#mL;Encrypt=True;"),
    ("pgpass", "~/.pgpass:\ndb.internal:5432:app:app_user:Kp2#xL9vQw"),
    ("k8s-secret", f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  username: YXBw\n  password: {base64.b64encode(b'S3cr3t-Pg-2024').decode()}"),
    ("aws-session-token", f"AWS_SESSION_TOKEN=IQoJb3JpZ2luX2VjE{r(300, AN + '/+')}"),
    ("azure-openai", f"AZURE_OPENAI_API_KEY={hexs(32)}\nAZURE_OPENAI_ENDPOINT=https://acme.openai.azure.com/"),
    ("mistral", f"client = Mistral(api_key=\"{r(32)}\")"),
    ("mcp-config", json.dumps({"mcpServers": {"github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"], "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": f"ghp_{r(36)}"}}}}, indent=2)),
    ("discord", f"Authorization: Bot {b64url(str(rng.randint(10**17, 10**18)).encode())}.{url(6)}.{url(27)}"),
    ("putty-private-key", f"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: dana@laptop\nPublic-Lines: 2\n{b64bytes(48)}\nPrivate-Lines: 1\n{b64bytes(24)}\nPrivate-MAC: {hexs(64)}"),
    ("git-header", f"git -c http.extraheader=\"AUTHORIZATION: bearer ghs_{r(36)}\" clone https://github.com/acme/private.git"),
    ("gemini", f"curl -H 'x-goog-api-key: AIza{url(35)}' https://generativelanguage.googleapis.com/v1beta/models"),
]
# the innocent corpus: what agents send all day about credentials without carrying one
INNOCENT = [
    ("placeholder", 'client = OpenAI(api_key="YOUR_API_KEY")'),
    ("placeholder", 'DATABASES = {"default": {"USER": "app", "password": "<your-password>"}}'),
    ("placeholder", "db:\n  user: app\n  password: ${DB_PASSWORD}"),
    ("placeholder", "OPENAI_API_KEY=sk-...\nANTHROPIC_API_KEY=sk-ant-..."),
    ("placeholder", "export OPENAI_API_KEY=<your key here>"),
    ("placeholder", "password: \"****\""),
    ("placeholder", "API_KEY=xxxxxxxxxxxxxxxxxxxx"),
    ("placeholder", "SECRET_KEY=changeme\nDEBUG=true"),
    ("placeholder", "stripe.api_key = 'sk_test_your_key_here'"),
    ("placeholder", 'headers = {"Authorization": f"Bearer {token}"}'),
    ("placeholder", "curl -H \"Authorization: Bearer $API_TOKEN\" https://api.example.com/v1/items"),
    ("placeholder", "Authorization: Bearer <access_token>"),
    ("placeholder", "POSTGRES_PASSWORD: {{ .Values.postgres.password }}"),
    ("placeholder", "env:\n  - name: GITHUB_TOKEN\n    value: ${{ secrets.GITHUB_TOKEN }}"),
    ("placeholder", "DATABASE_URL=postgres://${DB_USER}:${DB_PASSWORD}@${DB_HOST}:5432/app"),
    ("placeholder", "mongodb+srv://<username>:<password>@cluster0.mongodb.net/?retryWrites=true&w=majority"),
    ("placeholder", "The log shows `password=[REDACTED]` and `api_key=***` so the masking works."),
    ("placeholder", "AWS_SECRET_ACCESS_KEY=your-secret-access-key\nAWS_ACCESS_KEY_ID=your-access-key-id"),
    ("placeholder", "HF_TOKEN=hf_xxx python train.py"),
    ("placeholder", "# .env.example\nSTRIPE_SECRET_KEY=\nSENDGRID_API_KEY=\nJWT_SECRET=replace-me"),
    ("env-read", 'api_key = os.environ["OPENAI_API_KEY"]'),
    ("env-read", "client = anthropic.Anthropic(api_key=os.getenv(\"ANTHROPIC_API_KEY\"))"),
    ("env-read", "const token = process.env.GITHUB_TOKEN;\nconst octokit = new Octokit({ auth: token });"),
    ("env-read", "conn = psycopg.connect(host=host, user=user, password=password, dbname=name)"),
    ("env-read", "password = getpass.getpass('DB password: ')\nsecret = settings.SECRET_KEY"),
    ("env-read", "def login(username: str, password: str) -> Session:\n    token = auth.issue(username, password)\n    return Session(token=token)"),
    ("env-read", "class Settings(BaseSettings):\n    api_key: SecretStr\n    db_password: str = Field(min_length=12)\n    model_config = SettingsConfigDict(env_file='.env')"),
    ("env-read", "s3 = boto3.client('s3', aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key)"),
    ("env-read", "PWD=/home/dana/src/api\nOLDPWD=/home/dana\nSHELL=/bin/zsh\nHOME=/home/dana"),
    ("env-read", "ssl:\n  private_key: /etc/ssl/private/api.key\n  certificate: /etc/ssl/certs/api.crt"),
    ("env-read", "response = client.get_secret_value(SecretId='prod/app/db-credentials')\nsecret = json.loads(response['SecretString'])"),
    ("prose", "How should I store user passwords? I was going to use sha256 but someone said bcrypt or argon2 with a per-user salt."),
    ("prose", "Our password policy requires at least 12 characters; the password reset flow emails a one-time token that expires in 15 minutes."),
    ("prose", "Rotate the API key every 90 days and keep secrets in Vault, not in the repository. The access token is JWT-based and short-lived."),
    ("prose", "The secret ingredient is patience: the token bucket refills at 10 tokens per second, max_tokens: 4096."),
    ("prose", "Error: invalid_grant (the refresh token was revoked). User must sign in again; see docs on token rotation."),
    ("prose", "Use HTTP Basic authentication only over TLS; the basic idea is that credentials are base64-encoded, not encrypted."),
    ("prose", "Login failed for user 'admin': password authentication failed (SQLSTATE 28P01). The pg_hba.conf uses scram-sha-256."),
    ("hash", f"commit {hexs(40)}\nAuthor: Dana <dana@acme.io>\nDate:   Tue Jun 11 10:02:00 2024 +0200\n\n    Fix token refresh race"),
    ("hash", f"sha256:{hexs(64)}  dist/llm_cache-0.3.0-py3-none-any.whl"),
    ("hash", f"\"integrity\": \"sha512-{b64bytes(64)}\""),
    ("hash", f"ETag: \"{hexs(32)}\"\nX-Request-Id: {hexs(16)}\nsecret_hash: none"),
    ("hash", f"docker pull python@sha256:{hexs(64)}"),
    ("hash", f"git log --oneline\n{hexs(7)} Rotate secrets\n{hexs(7)} Add password strength meter\n{hexs(7)} Bump tokenizer"),
    ("base64", f"<img src=\"data:image/png;base64,{b64bytes(1500)}\">"),
    ("base64", f"The attachment field carries {b64bytes(300)} (a gzip of the report)."),
    ("base64", f"client-certificate-data: {base64.b64encode(pem('CERTIFICATE').encode()).decode()}"),
    ("base64", pem("CERTIFICATE", 900)),
    ("base64", pem("PUBLIC KEY", 294)),
    ("base64", f"ssh-ed25519 {b64bytes(51)} dana@laptop"),
    ("uuid", f"request_id={rng.randbytes(16).hex()[:8]}-4a1b-9c2d-{hexs(4)}-{hexs(12)} trace_id={hexs(32)} span_id={hexs(16)}"),
    ("uuid", "SELECT * FROM sessions WHERE id = '3f2b8c1e-7a4d-4e9b-8f1a-2c6d9e0b4a7f' AND revoked = false"),
    ("jwt-doc", "A JWT looks like header.payload.signature; the header eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9 decodes to {\"alg\":\"HS256\",\"typ\":\"JWT\"}."),
    ("config", "version: '3.8'\nservices:\n  db:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD_FILE: /run/secrets/db_password\n    secrets:\n      - db_password\nsecrets:\n  db_password:\n    file: ./secrets/db_password.txt"),
    ("config", "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: api\n    env:\n    - name: DB_PASSWORD\n      valueFrom:\n        secretKeyRef:\n          name: db-credentials\n          key: password"),
    ("config", "[mysqld]\nmax_connections = 500\ninnodb_buffer_pool_size = 4G\nvalidate_password.length = 12\nvalidate_password.policy = MEDIUM"),
    ("config", '{"type": "object", "properties": {"username": {"type": "string"}, "password": {"type": "string", "format": "password", "minLength": 8}}}'),
    ("config", "<input type=\"password\" name=\"password\" autocomplete=\"current-password\" minlength=\"12\">"),
    ("config", "resource \"aws_db_instance\" \"main\" {\n  username = \"app\"\n  password = var.db_password\n  manage_master_user_password = false\n}"),
    ("config", "spring.datasource.password=${SPRING_DATASOURCE_PASSWORD}\nspring.datasource.url=jdbc:postgresql://db:5432/shop"),
    ("code", "tokens = tokenizer.encode(text)\nif len(tokens) > max_tokens:\n    tokens = tokens[-max_tokens:]\ntoken_count = len(tokens)"),
    ("code", "SECRET_PATTERNS = [r'sk-[A-Za-z0-9]{20,}', r'AKIA[0-9A-Z]{16}', r'ghp_[A-Za-z0-9]{36}']"),
    ("code", "ALTER TABLE users ADD COLUMN password_hash text NOT NULL, ADD COLUMN api_key_prefix varchar(8);"),
    ("code", "if not secrets.compare_digest(token, expected):\n    raise PermissionError('bad token')\nsession_key = secrets.token_urlsafe(32)"),
    ("code", "git@github.com:acme/api.git\nhttps://github.com/acme/api/pull/1482\nhttp://localhost:8080/health"),
    ("code", "def test_password_too_short(client):\n    r = client.post('/signup', json={'email': 'a@b.co', 'password': 'short'})\n    assert r.status_code == 422"),
    ("log", "2024-06-11T10:02:13Z WARN auth: token expired for user_id=8812 (exp=1718086400), issuing refresh"),
    ("log", "INFO  [main] o.s.b.w.e.tomcat.TomcatWebServer: Tomcat started on port 8080; Using generated security password: see logs"),
    ("code", "digest = hashlib.sha256(password.encode()).hexdigest()\nif len(password) < 8:\n    raise ValueError('password too short')"),
    ("code", "const { data } = await supabase.auth.getSession();\nconst token = data.session?.access_token;"),
    ("code", 'String password = System.getenv("DB_PASSWORD");\nString apiKey = config.getProperty("api.key");'),
    ("code", 'password := os.Getenv("DB_PASSWORD")\nif password == "" {\n\tlog.Fatal("DB_PASSWORD is not set")\n}'),
    ("code", 'let api_key = std::env::var("OPENAI_API_KEY")?;'),
    ("code", "'password' => env('DB_PASSWORD'),\n'secret' => env('APP_SECRET'),"),
    ("code", 'read -s -p "Password: " PASSWORD\necho'),
    ("code", "SECRET_KEY = get_random_secret_key()\ntoken = jwt.encode(payload, SECRET_KEY, algorithm='HS256')"),
    ("code", 'api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)'),
    ("code", "UPDATE users SET password_hash = $1, updated_at = now() WHERE id = $2"),
    ("code", "cache_key = f\"user:{user_id}:profile\"\nkey = hashlib.sha1(body).hexdigest()"),
    ("config", '{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "[PAD]", "model_max_length": 4096}'),
    ("config", "kubectl create secret generic db --from-literal=password=$(openssl rand -base64 32)"),
    ("config", "- name: Publish\n  run: npm publish\n  env:\n    NODE_AUTH_TOKEN: ${{ secrets.NPM_TOKEN }}"),
    ("config", "ConnectionStrings__Default=Server=db;Database=app;User Id=sa;Password=${SA_PASSWORD};"),
    ("config", "location /admin {\n  auth_basic \"Restricted\";\n  auth_basic_user_file /etc/nginx/.htpasswd;\n}"),
    ("prose", "| Option | Type | Description |\n|---|---|---|\n| api_key | string | Your API key (defaults to env var) |\n| timeout | int | Seconds |"),
    ("prose", "Your password must contain at least 1 uppercase letter, 1 digit and be 8-64 characters long."),
    ("prose", "Enter passphrase for key '/home/dana/.ssh/id_ed25519':\nIdentity added: /home/dana/.ssh/id_ed25519 (dana@laptop)"),
    ("prose", "Access key IDs begin with AKIA (long-term) or ASIA (temporary); the secret access key is shown only once."),
    ("log", '{"access_token_expires_in": 3600, "token_type": "Bearer", "scope": "read write", "usage": {"prompt_tokens": 5000, "completion_tokens": 40}}'),
    ("log", "rotated signing key kid=2024-05-01-a1b2 (previous key retired)\nGenerated token in 12ms"),
    ("log", "terraform output\ndb_endpoint = \"app.c9xk.eu-west-1.rds.amazonaws.com\"\ndb_password = <sensitive>"),
]
if __name__ == "__main__":
    here = Path(__file__).parent
    for name, rows in (("secrets.jsonl", SECRETS), ("innocent.jsonl", INNOCENT)):
        with open(here / name, "w") as f:
            for kind, text in rows:
                f.write(json.dumps({"kind": kind, "text": text}) + "\n")
    print(f"{len(SECRETS)} secrets of {len({k for k, _ in SECRETS})} kinds, {len(INNOCENT)} innocent prompts")
