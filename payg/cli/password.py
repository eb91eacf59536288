"""`payg password`: the landlord's password hash for the web login; `payg login-link`: a login without it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

MIN_PASSWORD = 10


def cmd_password(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
                 stdin: TextIO = sys.stdin) -> int:
    """`payg password`: the landlord's password hash (werkzeug's scrypt); the password is never stored."""
    import getpass

    from werkzeug.security import generate_password_hash

    if args.stdin:
        password = stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Landlord password: ")
        if getpass.getpass("Again: ") != password:
            print("payg: the two passwords differ; nothing written", file=err)
            return 1
    if len(password) < MIN_PASSWORD:
        print(f"payg: the password needs at least {MIN_PASSWORD} characters", file=err)
        return 1
    hashed = generate_password_hash(password, method="scrypt")
    if args.file is None:
        print(hashed, file=out)
        return 0
    path = Path(args.file)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(hashed + "\n")
    except OSError as exc:
        print(f"payg: cannot write {path}: {exc.strerror}", file=err)
        return 1
    print(f"wrote the landlord's password hash to {path} (mode 600); set landlord_password_hash_file = "
          f"\"{path}\" under [web] and restart the controller", file=out)
    return 0


def cmd_login_link(api, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """`payg login-link`: a one-time link (ten minutes) that logs in as the landlord, from the running controller.

    It needs the controller's API token, so only its user on its machine gets one: the way in when the
    password is lost, or when the login from one's address is held up by failed attempts."""
    from datetime import datetime

    from payg.cli.voice import ask

    body, status = ask(api, "POST", "/api/login-links", {}, err, timeout_s=10.0)
    if status:
        return status
    until = datetime.fromtimestamp(body["expires_at"]).astimezone().isoformat(timespec="seconds")
    print(body["url"], file=out)
    print(f"Open it in a browser and press \"Log in\": good once, until {until}. Behind a proxy set "
          "[web] public_url so the link names the address people use.", file=err)
    return 0
