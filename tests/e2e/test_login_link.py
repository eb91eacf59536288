"""`payg login-link` against a real controller: the link logs a browser in once, through the real server."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.support import free_port
from tests.support.cli import payg, write_config
from tests.support.web_beds import PASSWORD_HASH


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def browser():
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect), jar


def status(opener, url: str, data: dict | None = None) -> tuple[int, str]:
    try:
        with opener.open(url, urllib.parse.urlencode(data).encode() if data else None, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_payg_login_link_logs_a_browser_in_once(tmp_path: Path, controllers):
    hash_file = tmp_path / "landlord.hash"
    hash_file.write_text(PASSWORD_HASH + "\n")
    hash_file.chmod(0o600)
    port = free_port()
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", port=port)
    config.write_text(config.read_text().replace("[web]\n", f'[web]\nlandlord_password_hash_file = "{hash_file}"\n'))

    down = payg("login-link", "--config", str(config), cwd=tmp_path)
    assert down.returncode == 1 and "is not running (connection refused)" in down.stderr

    controller = controllers(config, tmp_path, port)
    controller.wait_ready()
    made = payg("login-link", "--config", str(config), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    url = made.stdout.strip()
    assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/landlord/link/[A-Za-z0-9_-]{{43}}", url), url
    assert "good once" in made.stderr

    opener, jar = browser()
    code, page = status(opener, url)
    assert code == 200 and "Log in" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert status(opener, f"http://127.0.0.1:{port}/landlord")[0] == 302   # seeing the page logged nobody in
    assert status(opener, url, {"csrf_token": token})[0] == 302
    code, page = status(opener, f"http://127.0.0.1:{port}/landlord")
    assert code == 200 and "kitchen" in page

    other, _ = browser()
    code, page = status(other, url)
    assert code == 404 and "used already" in page
    assert controller.stop() == 0, controller.output()
