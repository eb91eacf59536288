"""`payg redeem`, the command a tenant may run, speaks the tenant's language (LANGUAGE, LC_ALL, LC_MESSAGES or LANG,
then `[web] language`); the landlord's commands stay in English."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import free_port
from tests.support.cli import payg, write_config

FRENCH = dict(os.environ, LANGUAGE="", LC_ALL="", LC_MESSAGES="", LANG="fr_FR.UTF-8")


def test_a_tenant_redeems_a_code_in_french_and_is_refused_in_french(tmp_path: Path, controllers):
    port = free_port()
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", port=port)
    controllers(config, tmp_path, port).wait_ready()

    def run(*args: str, env: dict[str, str] = FRENCH):
        return payg("--config", str(config), *args, cwd=tmp_path, env=env)

    made = run("code", "--socket", "office", "--tokens", "20")
    assert made.returncode == 0 and "tokens" in made.stderr                 # the landlord's command: English
    code = made.stdout.strip()
    done = run("redeem", "--socket", "office", code)
    assert (done.returncode, done.stdout) == (0, "20 jetons crédités sur la prise office\n"), done.stderr
    again = run("redeem", "--socket", "office", code)
    assert again.returncode == 1
    assert again.stderr == ("payg: refusé\u00a0: Ce code a déjà été utilisé, ou un code plus ancien a été saisi après "
                            "des codes plus récents. Chaque code ne crédite qu’une fois.\n")
    bad = run("redeem", "--socket", "office", "12345")
    assert bad.returncode == 2 and bad.stderr.startswith("payg: ce n’est pas un code\u00a0: ")
    english = run("redeem", "--socket", "office", code, env=dict(FRENCH, LANG="en_GB.UTF-8"))
    assert english.stderr.startswith("payg: refused: This code was used already")
