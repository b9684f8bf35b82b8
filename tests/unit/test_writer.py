"""The writer process, started from places other than mitmdump."""

import subprocess
import sys
import textwrap

from tests.support.procs import ROOT, clean_env


def test_an_unguarded_main_script_is_not_run_again_by_the_writer(tmp_path):
    # Someone's own script that embeds the cache, with no `if __name__ == "__main__":` guard. If
    # spawn re-ran it in the writer process, it would print "started" twice (or worse, fail).
    script = tmp_path / "embed.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import cache_models
        from llm_cache.records import Record
        print("started", flush=True)
        store = cache_models.CacheStore("sqlite:///{tmp_path}/c.sqlite3")
        store.put(Record(key="k" * 64, status=200, headers=[], body=b'{{"choices": []}}', is_stream=False,
                         created_at=1.0, family="openai.chat", request_body=b'{{"model": "m"}}'))
        store.flush()
        store.close()
        cache_models.open_database("sqlite:///{tmp_path}/c.sqlite3")
        print("entries", cache_models.CacheEntry.select().count(), flush=True)
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                            env=clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("started") == 1
    assert "entries 1" in result.stdout
