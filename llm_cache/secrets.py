"""Credentials pasted into prompts: an agent that reads a .env file sends its keys to the model.
Such a request is answered but never recorded, so the secret never reaches the cache's database.

Two families of rules. Providers' own key formats (`sk-ant-…`, `AKIA…`, `ghp_…`, PEM blocks, JWTs)
are specific enough to trust wherever they appear. Generic assignments (`DB_PASS=…`, `"password":
"…"`, `the secret access key is …`, `postgres://user:pass@host`) are judged by their value: a
placeholder (`YOUR_API_KEY`, `<password>`, `${VAR}`, `****`), a code reference (`os.environ[…]`,
`settings.SECRET_KEY`), a file path or a plain word is not a secret. tests/unit/data holds the
corpus of secrets and innocent prompts the rules are measured against.
"""

import base64
import binascii
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

Check = Callable[[re.Match[bytes]], bool]

# A value is a placeholder, not a secret, if it says so (searched in the lowered value). Words like
# "password" inside a value mark documentation and tests ("mysecretpassword", "token123").
_PLACEHOLDER = re.compile(
    rb"your|xxx|\*\*\*|\.\.\.|\xe2\x80\xa6|\xe2\x80\xa2|changeme|change[_-]me|replace|example|placeholder"
    rb"|redacted|dummy|here\b|insert|fixme|todo|passw|secret|token|[<>{}]|^\$|\$[({]|^%|%\(|^!|^\["
)
# The same for a provider's key format, where a random tail must not pass for a word: "xXx" happens
# in 1 of ~200 OpenAI keys, "xxxx" or "XXXX" in none.
_TOKEN_PLACEHOLDER = re.compile(rb"(?i:your|example|here\b|placeholder|dummy|insert|replace)|x{4}|X{4}|\.\.\.|[<>{}*]")
_PATH = re.compile(rb"(?:~|\.{1,2}|[A-Za-z]:)?[/\\][\w.@~-]*(?:[/\\][\w.@~-]*)*")
_NOT_A_PASSWORD = re.compile(  # a colour; a grammar's 1*tchar; a URL (one with a password is the URL rule's)
    rb"#[0-9A-Fa-f]{3,8}|[0-9]*\*[A-Za-z(].*|[A-Za-z][A-Za-z0-9+.-]*://.*"
)
_CODE_REF = re.compile(  # a variable, attribute or member: settings.SECRET_KEY, data.session?.token, db_pass2
    rb"[A-Za-z_$][\w$]*(?:(?:\?\.|->|::|\.)[A-Za-z_$][\w$]*)+|[a-z][a-z0-9]*(?:_[a-z0-9]+)+"
)
_CAMEL_WORD = re.compile(rb"[A-Z][a-z]{2,}")
_NEXT_ASSIGNMENT = re.compile(rb"[=:][^=]")  # not base64 padding
_HAS_DIGIT = re.compile(rb"[0-9]")
_HAS_STRONG = re.compile(rb"[!#$%&*+=?@^~|]")  # a symbol a password has and a name does not (not _ . - /)
_RANDOM = re.compile(rb"[A-Za-z0-9_+/=-]{20,}")
_UUID = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_placeholder(value: bytes) -> bool:
    return _PLACEHOLDER.search(value.lower()) is not None


def _not_placeholder(m: re.Match[bytes]) -> bool:
    return _TOKEN_PLACEHOLDER.search(m.group()) is None


def _always(m: re.Match[bytes]) -> bool:
    return True


def _changes(value: bytes) -> int:
    """How often a value switches between upper case, lower case and the rest: ~0.6 per byte in a
    random token, far fewer in a CamelCase name (PKCS12PrivateKeyTypes: 7 in 21)."""
    classes = [(64 < c < 91) + 2 * (96 < c < 123) for c in value]
    return sum(a != b for a, b in zip(classes, classes[1:], strict=False))


def _is_name(value: bytes) -> bool:
    """A CamelCase type or class name (x25519.X25519PrivateKey, PKCS7PrivateKeyTypes)."""
    return (value.replace(b"_", b"").isalnum() and len(_CAMEL_WORD.findall(value)) >= 2
            and _changes(value) < len(value) * 0.4)


def _looks_secret(value: bytes, *, quoted: bool, loose: bool, strict: bool, bare: bool) -> bool:
    """Whether an assigned value is a credential rather than a placeholder, reference, path or word.

    loose: joined by a space or "is", as in prose ("the password is …"): it needs 8 bytes and a digit.
    strict: the name only ends in "key" (OPENAI_KEY, cache_key), so it needs a random-looking token.
    bare: an all-caps NAME=value line, as in .env files, where a letters-only value is a literal.
    """
    value = value.rstrip(b",;.)]}>")
    if len(value) < (8 if loose else 6) or is_placeholder(value) or _NOT_A_PASSWORD.fullmatch(value):
        return False
    if not quoted and (b"(" in value or b"[" in value or _CODE_REF.fullmatch(value)
                       or not bare and _is_name(value)):
        return False  # code: os.environ["X"], getpass.getpass(...), data.session?.access_token, a type
    if loose and _NEXT_ASSIGNMENT.search(value):
        return False  # "signing key kid=2024-05-01": the word after the name is another field
    if _PATH.fullmatch(value) and not (_HAS_DIGIT.search(value) and value.lower() != value):
        return False  # /etc/ssl/private/api.key, ./secrets/db.txt; a 40-character AWS key may start with /
    if strict:  # a UUID there is an identifier: OpenAI's prompt_cache_key, an idempotency key
        return (len(value) >= 20 and _RANDOM.fullmatch(value) is not None and _changes(value) >= len(value) * 0.4
                and _UUID.fullmatch(value) is None)
    if not any(65 <= c <= 90 or 97 <= c <= 122 for c in value):
        return False  # 4096, 2024-05-01: a number is not a password worth refusing for
    if _HAS_DIGIT.search(value):
        return True
    if loose:
        return False  # "the password is incorrect", "the access token is JWT-based"
    return _HAS_STRONG.search(value) is not None or (bare and len(value) >= 8)


# NAME = value, NAME: "value", "name": "value" (inside a JSON string its quotes arrive as \"), NAME
# value and NAME is value (prose, .netrc). The anchor found the name's last word; what precedes it
# (DB_, aws_secret_access_, client) does not matter, what follows must end the name.
_CONNECT = (
    rb"(?P<closed>\\?[\"'`])?(?:[ \t]*(?P<op>=>|:=|[:=>])|(?(closed)(?!)|[ \t]+(?:(?:is|was|of)[ \t]+)?))[ \t]*"
    rb"(?P<quote>\\?[\"'`])?(?P<value>[^\s\"'`\\<&(=][^\s\"'`\\<&]{5,})"  # & ends a query string's field
)
_KEY_PREFIX = re.compile(  # the words before "key" that make it a credential's name, not a cache key's
    rb"(?:api|secret|private|access|account|sharedaccess|signing|encryption|master|license|subscription"
    rb"|client|app|admin|auth|service|webhook|consumer|x-api|ocp-apim-subscription)[ _-]?$"
)


_NOT_A_CREDENTIAL = re.compile(rb"(?i)(?:page|cursor|continuation|sync|csrf|xsrf)[ _-]?$")
_XML_OPEN = re.compile(rb"<[\w.:-]*$")


def _assignment(m: re.Match[bytes]) -> bool:
    name = m.group("name")
    strict = False
    if name[-3:].lower() == b"key":
        before = m.string[max(0, m.start() - 24):m.start()].lower()
        strict = _KEY_PREFIX.search(before) is None
        if strict and m.group("op") is None:
            return False  # "the key point", "primary key 12": prose about keys
    if m.group("op") == b">" and not (_XML_OPEN.search(m.string, max(0, m.start() - 32), m.start())
                                      and m.string[m.end():m.end() + 2] == b"</"):
        return False  # <password>…</password> is an assignment; user:<password>@host is a placeholder
    if name[-5:].lower() == b"token" and _NOT_A_CREDENTIAL.search(m.string, max(0, m.start() - 24), m.start()):
        return False  # next_page_token, csrf_token: a cursor or a form's nonce
    if name.lower() == b"pass" and m.group("op") is None:
        return False  # "required to pass h2spec": the verb
    bare = name.isupper() and m.string[m.end("name"):m.start("value")] == b"="
    return _looks_secret(m.group("value"), quoted=m.group("quote") is not None, loose=m.group("op") is None,
                         strict=strict, bare=bare)


def _assign(name: bytes) -> re.Pattern[bytes]:
    return re.compile(rb"(?i)(?P<name>" + name + rb")" + _CONNECT)


def _url_credentials(m: re.Match[bytes]) -> bool:
    """scheme://user:password@host: the anchor is the @, the password is just before it."""
    before = m.string[max(0, m.start() - 200):m.start()]
    found = _URL_USERINFO.fullmatch(before, max(0, before.rfind(b"://")))  # searching cost ~50 us an @
    return found is not None and not is_placeholder(found.group(1)) and not found.group(1).isdigit()


_URL_USERINFO = re.compile(rb"://[^\s:/@\"'<>\\]{0,64}:([^\s/@\"'<>\\]{1,128})")


def _basic(m: re.Match[bytes]) -> bool:
    try:
        decoded = base64.b64decode(m.group(1), validate=True)
    except (binascii.Error, ValueError):
        return False
    user, colon, password = decoded.partition(b":")
    return bool(colon and password) and decoded.isascii() and not is_placeholder(decoded)


def _pem_in_base64(m: re.Match[bytes]) -> bool:
    head = m.group()[:64]  # "-----BEGIN RSA PRIVATE KEY-----" is 31 bytes, 44 in base64
    try:
        return b"PRIVATE KEY" in base64.b64decode(head[: len(head) // 4 * 4])
    except (binascii.Error, ValueError):
        return False


_DISCORD_ID = re.compile(rb"(?<![\w-])[MNO][A-Za-z0-9]{23,25}$")  # base64 of the bot's numeric id


def _discord(m: re.Match[bytes]) -> bool:
    return _DISCORD_ID.search(m.string, max(0, m.start() - 26), m.start()) is not None and _not_placeholder(m)


def _flag_value(m: re.Match[bytes]) -> bool:
    return _looks_secret(m.group("value"), quoted=False, loose=True, strict=False, bare=False)


def _login_flag_value(m: re.Match[bytes]) -> bool:
    """docker login -u ci -p VALUE: a spaced -p is a password only after a user on the same line."""
    line = m.string[max(0, m.start() - 120):m.start()]
    line = line[line.rfind(b"\n") + 1:]
    return (b"-u" in line or b"login" in line) and _flag_value(m)


class Rule(NamedTuple):
    anchor: bytes  # a regex over the lowered text, starting with a literal byte: where to look
    back: int  # the pattern starts this many bytes before the anchor
    kind: str
    pattern: re.Pattern[bytes]  # matched on the original text
    check: Check = _not_placeholder


_PASSWORD = "a password or secret assignment"
# The anchors are chosen to begin with a rare byte: the search costs in proportion to how many
# positions start like an anchor ("token" is found as "ken", a JWT as "yj", a URL's password at its @).
RULES: tuple[Rule, ...] = (
    Rule(b"sk-", 0, "an Anthropic API key", re.compile(rb"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    Rule(b"sk-", 0, "an OpenAI-style API key",
         re.compile(rb"\bsk-(?:proj-|svcacct-|admin-|or-v1-)?[A-Za-z0-9_-]{20,}")),
    Rule(b"gsk_", 0, "a Groq API key", re.compile(rb"\bgsk_[A-Za-z0-9]{40,}")),
    Rule(b"xai-", 0, "an xAI API key", re.compile(rb"\bxai-[A-Za-z0-9]{60,}")),
    Rule(b"pplx-", 0, "a Perplexity API key", re.compile(rb"\bpplx-[A-Za-z0-9]{40,}")),
    Rule(b"8_", 1, "a Replicate API token", re.compile(rb"\br8_[A-Za-z0-9]{30,}")),
    Rule(b"f_", 1, "a Hugging Face token", re.compile(rb"\bhf_[A-Za-z0-9]{30,}\b")),
    Rule(b"aiza", 0, "a Google API key", re.compile(rb"\bAIza[0-9A-Za-z_-]{35}")),
    Rule(b"gocspx-", 0, "a Google OAuth client secret", re.compile(rb"\bGOCSPX-[A-Za-z0-9_-]{24,}")),
    Rule(b"a(?:kia|sia|bia|cca)", 0, "an AWS access key", re.compile(rb"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
         _always),  # AWS's own documentation key, AKIAIOSFODNN7EXAMPLE, is refused too: cheap to lose
    Rule(b"gh[pousr]_", 0, "a GitHub token", re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36,}")),
    Rule(b"github_pat_", 0, "a GitHub token", re.compile(rb"\bgithub_pat_[A-Za-z0-9_]{40,}")),
    Rule(b"gl(?:pat|dt|rt|ptt|cbt|soat|ffct|imt|oas)-", 0, "a GitLab token",
         re.compile(rb"\bgl(?:pat|dt|rt|ptt|cbt|soat|ffct|imt|oas)-[A-Za-z0-9_-]{20,}")),
    Rule(b"pm_", 1, "an npm token", re.compile(rb"\bnpm_[A-Za-z0-9]{36}")),
    Rule(b"pypi-age", 0, "a PyPI token", re.compile(rb"\bpypi-AgE[A-Za-z0-9_-]{50,}")),
    Rule(b"xox[abprse]-", 0, "a Slack token", re.compile(rb"\bxox[abprse]-[A-Za-z0-9-]{10,}")),
    Rule(b"xapp-", 0, "a Slack token", re.compile(rb"\bxapp-\d-[A-Za-z0-9-]{20,}")),
    Rule(b"slack\\.com/services/", 6, "a Slack webhook", re.compile(rb"hooks\.slack\.com/services/T\w+/B\w+/\w{16,}")),
    Rule(b"ks/[0-9]", 11, "a Discord webhook", re.compile(rb"/api/webhooks/\d{10,}/[\w-]{40,}")),
    Rule(b"aa[a-z0-9_-]{33}", 1, "a Telegram bot token", re.compile(rb"(?<=[0-9]{8}):AA[\w-]{33}")),
    Rule(b"k_(?:live|test)_", 1, "a Stripe secret key", re.compile(rb"\b[sr]k_(?:live|test)_[A-Za-z0-9]{20,}")),
    Rule(b"sec_", 2, "a Stripe webhook secret", re.compile(rb"\bwhsec_[A-Za-z0-9+/]{24,}")),
    Rule(b"ac[0-9a-f]{32}", 0, "a Twilio account SID", re.compile(rb"\bAC[0-9a-f]{32}\b")),
    Rule(b"sk[0-9a-f]{32}", 0, "a Twilio API key", re.compile(rb"\bSK[0-9a-f]{32}\b")),
    Rule(b"sg\\.[a-z0-9_-]{22}\\.", 0, "a SendGrid API key", re.compile(rb"\bSG\.[\w-]{22}\.[\w-]{43}")),
    Rule(b"key-[0-9a-f]{32}", 0, "a Mailgun API key", re.compile(rb"\bkey-[0-9a-f]{32}\b")),
    Rule(b"shp(?:at|ca|pa|ss)_", 0, "a Shopify token", re.compile(rb"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}")),
    Rule(b"p_v1_", 2, "a DigitalOcean token", re.compile(rb"\bdo[opr]_v1_[a-f0-9]{64}")),
    Rule(b"s\\.[a-z0-9_-]{24}", 2, "a HashiCorp Vault token", re.compile(rb"\bhvs\.[A-Za-z0-9_-]{24,}")),
    Rule(b"atlasv1\\.", 15, "a Terraform Cloud token", re.compile(rb"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_-]{60,}")),
    Rule(b"age-secret-key-1", 0, "an age secret key", re.compile(rb"AGE-SECRET-KEY-1[0-9A-Z]{58}"), _always),
    Rule(b"p\\.(?:st|pt|sa|ct)\\.", 1, "a Doppler token", re.compile(rb"\bdp\.(?:st|pt|sa|ct)\.[\w.-]{40,}")),
    Rule(b"yj", 1, "a JSON Web Token", re.compile(rb"\beyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{10,}")),
    Rule(b"-----begin ", 0, "a private key", re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
         _always),
    Rule(b"private-lines:", 0, "a private key", re.compile(rb"(?i)Private-Lines: \d+"), _always),  # PuTTY .ppk
    Rule(b"\\.[a-z0-9_-]{6}\\.[a-z0-9_-]{27}", 0, "a Discord bot token", re.compile(rb"\.[\w-]{6}\.[\w-]{27,40}"),
         _discord),
    Rule(b"s0tls1crudjti", 1, "a private key", re.compile(rb"LS0tLS1CRUdJTi[A-Za-z0-9+/=]{40,}"), _pem_in_base64),
    Rule(b"@", 0, "a password in a URL", re.compile(rb"@[\w.-]"), _url_credentials),
    Rule(b"sig=", 1, "an Azure shared access signature", re.compile(rb"[?&;]sig=[A-Za-z0-9%+/=_-]{30,}")),
    Rule(b"bearer", 0, "a bearer token", re.compile(rb"\b[Bb]earer\s+[A-Za-z0-9._~+/-]{20,}=*"),
         lambda m: _not_placeholder(m) and _HAS_DIGIT.search(m.group()) is not None),
    Rule(b"basic ", 0, "an HTTP Basic credential", re.compile(rb"\b[Bb]asic\s+([A-Za-z0-9+/]{8,}={0,2})"), _basic),
    Rule(b"authorization", 0, "an authorization header",
         re.compile(rb"(?i)authorization\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?(?:token|bot|key|apikey|sso-key)[ \t]+"
                    rb"(?P<value>[A-Za-z0-9._~+/-]{16,}=*)"), _flag_value),
    Rule(b"-u", 1, "a password in a command line",
         re.compile(rb"\s-u[ \t]+\\?[\"']?[^\s:\"'$]+:(?P<value>[^\s\"'\\]+)"), _flag_value),  # curl -u user:pass
    Rule(b"-p", 1, "a password in a command line", re.compile(rb"\s-p(?P<value>[^\s\"'\\-][^\s\"'\\]*)"),
         _flag_value),  # mysql -pS3cret: the value is attached
    Rule(b"-p", 1, "a password in a command line", re.compile(rb"--password[= ](?P<value>[^\s\"'\\-]\S*)"),
         _flag_value),
    Rule(b"-p", 1, "a password in a command line", re.compile(rb"\s-p[ \t]+(?P<value>[^\s\"'\\-]\S*)"),
         _login_flag_value),
    Rule(b"pass(?:word|wd|phrase)?[\\\\\"'` \t:=>]", 0, _PASSWORD, _assign(rb"pass(?:word|wd|phrase)?"), _assignment),
    Rule(b"pwd[\\\\\"'` \t:=>]", 0, _PASSWORD, _assign(rb"pwd"), _assignment),
    Rule(b"secret[\\\\\"'` \t:=>]", 0, _PASSWORD, _assign(rb"secret"), _assignment),
    Rule(b"ken[\\\\\"'` \t:=>]", 2, _PASSWORD, _assign(rb"token"), _assignment),
    Rule(b"key[\\\\\"'` \t:=>]", 0, _PASSWORD, _assign(rb"key"), _assignment),
)


def _alternation(rules: tuple[Rule, ...]) -> re.Pattern[bytes]:
    """One alternation of every anchor, grouped by first byte, so the engine tries one branch per
    position, not one per anchor (a flat alternation cost twice as much; a named group per anchor, to
    tell which matched, cost 2.5 times as much: _rules_at asks instead)."""
    by_first: dict[bytes, list[bytes]] = {}
    for anchor in dict.fromkeys(rule.anchor for rule in rules):
        first, rest = (anchor[:2], anchor[2:]) if anchor.startswith(b"\\") else (anchor[:1], anchor[1:])
        by_first.setdefault(first, []).append(rest)
    return re.compile(b"|".join(first + b"(?:" + b"|".join(rests) + b")" for first, rests in by_first.items()))


_ANCHORS = _alternation(RULES)
_ANCHOR_OF = {rule.anchor: re.compile(rule.anchor) for rule in RULES}
_RULES_AT: dict[bytes, tuple[Rule, ...]] = {}


def _rules_at(found: bytes) -> tuple[Rule, ...]:
    """The rules whose anchor matched this text, remembered: most anchors are keywords that repeat."""
    rules = _RULES_AT.get(found)
    if rules is None:
        rules = tuple(rule for rule in RULES if _ANCHOR_OF[rule.anchor].fullmatch(found))
        if len(_RULES_AT) > 4096:  # anchors that carry a token (a Twilio SID) are each new
            _RULES_AT.clear()
        _RULES_AT[found] = rules
    return rules


# a JSON object's member whose name ends like a credential's: "password": "…" is an assignment too
_KEYWORD = re.compile(r"(?i)(?:pass(?:word|wd|phrase)?|pwd|secret|token|key)$")

LONG = 512  # characters: strings this long are scanned alone, and remembered once found clean


class SecretScanner:
    """find_secret over a JSON request body, remembering long strings already found clean.

    Scanning costs ~12 us per KB, and an agent resends its whole conversation (system prompt,
    every earlier turn) on each call: a 20 KB request took ~250 us to scan, on every miss. Each long
    string is scanned once; a repeat costs a hash.
    """

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._clean: OrderedDict[tuple[int, int], None] = OrderedDict()

    def scan(self, raw: bytes) -> str | None:
        """What kind of credential a JSON body carries, or None; raises ValueError for non-JSON."""
        return self.scan_value(orjson.loads(raw))

    def scan_value(self, body: Any) -> str | None:
        """What kind of credential a parsed JSON body carries, or None."""
        short: list[str] = []
        stack: list[Any] = [body]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                for name, item in value.items():
                    if isinstance(item, str) and _KEYWORD.search(name):
                        short.append(f"{name}={item}")  # a JSON "password": "..." is an assignment too
                    short.append(name)
                    stack.append(item)
            elif isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, str):
                if len(value) < LONG:
                    short.append(value)
                elif kind := self._scan_long(value):
                    return kind
        return find_secret("\n".join(short).encode())

    def _scan_long(self, text: str) -> str | None:
        memo_key = (len(text), hash(text))
        if memo_key in self._clean:
            self._clean.move_to_end(memo_key)
            return None
        kind = find_secret(text.encode())
        if kind is None:
            self._clean[memo_key] = None
            if len(self._clean) > self._size:
                self._clean.popitem(last=False)
        return kind


def find_secret(raw: bytes) -> str | None:
    """What kind of credential a text carries, or None."""
    for anchor in _ANCHORS.finditer(raw.lower()):
        at = anchor.start()
        for rule in _rules_at(anchor.group()):
            m = rule.pattern.match(raw, max(0, at - rule.back))
            if m is not None and rule.check(m):
                return rule.kind
    return None
