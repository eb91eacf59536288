"""Two languages (issue 28, item 6): every page string is in the catalogue and translated into French, and a
page's language follows the switcher's cookie, then `Accept-Language`, then `[web] language`."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from jinja2 import nodes

from payg.services.codes import REFUSALS
from payg.webkit import i18n
from tests.support.web_beds import make_web_bed

ROOT = Path(__file__).resolve().parents[2]
VISIBLE_ATTRIBUTES = ("title", "alt", "placeholder", "aria-label", "data-label")
SKIPPED = ("code", "pre", "script", "style")  # a command or a data block is not prose
GETTEXT = {"_", "gettext", "ngettext"}
UNITS = {"W", "Wh", "kWh"}  # SI symbols read alike in both languages
BRANDS = {"payg", "payg hub"}
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\w+\}")


def templates() -> list[Path]:
    return sorted((ROOT / "templates").rglob("*.html"))


class _Text(HTMLParser):
    """What a reader sees of a template's literal HTML: its text and its visible attributes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in SKIPPED:
            self.skipping += 1
        self.found += [v for k, v in attrs if k in VISIBLE_ATTRIBUTES and v]

    def handle_endtag(self, tag):
        if tag in SKIPPED:
            self.skipping = max(0, self.skipping - 1)

    def handle_data(self, data):
        if not self.skipping:
            self.found.append(data)


def _printed_strings(node: nodes.Node):
    """The string constants a template prints or hands to a macro as its words, outside any gettext call."""
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name in GETTEXT:
        return
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        yield node.value
        return
    if isinstance(node, nodes.Compare):
        return  # a compared value is not printed
    if isinstance(node, nodes.Pair):
        yield from _printed_strings(node.value)  # a key is looked up, its value shown
        return
    for child in node.iter_child_nodes():
        if isinstance(node, nodes.Filter | nodes.Test) and child is not node.node:
            continue  # a filter's or a test's arguments: not words
        yield from _printed_strings(child)


def _words(text: str) -> bool:
    """A string a person reads: a capitalised word, or words with a space between (not an id, a path or a class)."""
    t = text.replace("\0", " ").strip()
    return bool(re.search(r"[A-Za-z]{2}", t)) and (bool(re.match(r"[A-Z][a-z]", t)) or bool(
        re.search(r"[a-z]{2,} [a-z]{2,}", t))) and not t.startswith(("/", "#"))


def _prose(text: str) -> bool:
    """Literal HTML text a person reads: not a unit, and not a lone lower-case token (a class name a block fills)."""
    t = text.strip().strip("·").strip()
    return (bool(re.search(r"[A-Za-z]{2}", t)) and t not in UNITS and t not in BRANDS
            and not re.fullmatch(r"[a-z][a-z0-9_-]*", t))


def untranslated(path: Path) -> list[str]:
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"])
    tree = env.parse(path.read_text(encoding="utf-8"))
    html = "\0".join(  # each printed expression stands as \0 in the HTML around it
        "".join(n.data if isinstance(n, nodes.TemplateData) else "\0" for n in out.nodes)
        for out in tree.find_all(nodes.Output))
    parser = _Text()
    parser.feed(html)
    found = [t.strip() for text in parser.found for t in text.split("\0") if _prose(t)]
    for kind in (nodes.Output, nodes.Assign, nodes.Call):
        for node in tree.find_all(kind):
            if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name in GETTEXT:
                continue
            parts = node.nodes if isinstance(node, nodes.Output) else [node.node] if isinstance(node, nodes.Assign) \
                else [*node.args, *(k.value for k in node.kwargs)]
            for part in parts:
                if not isinstance(part, nodes.TemplateData):
                    found += [s for s in _printed_strings(part) if _words(s)]
    return sorted(set(found))


@pytest.mark.parametrize("path", templates(), ids=lambda p: str(p.relative_to(ROOT / "templates")))
def test_every_string_a_page_shows_goes_through_the_catalogue(path):
    assert untranslated(path) == [], f"{path.relative_to(ROOT)}: text outside {{% trans %}} or _()"


def test_the_check_finds_text_outside_the_catalogue(tmp_path):
    page = tmp_path / "planted.html"
    page.write_text('<h1>Top up</h1><input placeholder="your code"><p>{{ _("Fine") }}</p><pre><code>payg run'
                    '</code></pre>{{ x or "No sockets" }}{% set m = {"a": "Forced off"} %}'
                    '{{ parts.dialog("id", "Send it") }}{% trans %}Also fine{% endtrans %}')
    assert untranslated(page) == ["Forced off", "No sockets", "Send it", "Top up", "your code"]


def extracted() -> dict:
    """Every message marked in payg/, templates/ and static/, as `make messages` extracts it (babel.cfg)."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "n_": (1, 2)}
    return {msg[2] if isinstance(msg[2], str) else msg[2][0]: msg[2]
            for msg in extract_from_dir(str(ROOT), method_map, options_map, keywords=keywords)}


@pytest.mark.parametrize("lang", [code for code in i18n.LANGUAGES if code != i18n.SOURCE])
def test_every_message_has_a_translation_with_the_same_placeholders(lang):
    catalogue = i18n.catalogue(lang)
    missing, fuzzy, placeholders = [], [], []
    for key, msgid in extracted().items():
        m = catalogue.get(key if isinstance(msgid, str) else msgid[0])
        if m is None or not (all(m.string) if isinstance(m.string, tuple | list) else m.string):
            missing.append(key)
            continue
        if m.fuzzy:
            fuzzy.append(key)
        ids = [msgid] if isinstance(msgid, str) else list(msgid)
        strings = [m.string] if isinstance(m.string, str) else list(m.string)
        want = sorted(set(PLACEHOLDER.findall(ids[-1])) | set(PLACEHOLDER.findall(ids[0])))
        if any(sorted(set(PLACEHOLDER.findall(s))) != want for s in strings):
            placeholders.append((key, strings))
    assert missing == [], f"not in payg/locale/{lang} (run `make messages` and translate them): {missing}"
    assert fuzzy == [], f"fuzzy in payg/locale/{lang}: {fuzzy}"
    assert placeholders == [], f"placeholders differ: {placeholders}"


def test_french_punctuation_has_its_non_breaking_space():
    bad = []
    for m in i18n.catalogue("fr"):
        if not m.id:
            continue  # the header
        for s in [m.string] if isinstance(m.string, str) else list(m.string or ()):
            if re.search(r"( [:;?!»])|(« )|([^\s\u00a0\u202f/][:;?!](\s|$))", s):
                bad.append(s)
    assert bad == []


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    b = make_web_bed(tmp_path_factory.mktemp("languages"))
    yield b
    b.close()


def lang_of(html: str) -> str:
    return re.search(r'<html lang="(\w+)">', html).group(1)


def test_the_browser_s_language_then_the_switcher_s_cookie_choose_the_page_s(bed):
    c = bed.client()
    page = c.get("/", headers={"Accept-Language": "fr-CA,fr;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert lang_of(page) == "fr" and "<h1>Prises</h1>" in page and "Choisissez votre prise" in page
    assert 'Accept-Language' in c.get("/").headers["Vary"]
    page = c.get("/", headers={"Accept-Language": "de-DE,es;q=0.8"}).get_data(as_text=True)
    assert lang_of(page) == "en" and "<h1>Sockets</h1>" in page        # none payg has: the default
    page = c.get("/", headers={"Accept-Language": "en;q=0.4,fr;q=0.8"}).get_data(as_text=True)
    assert lang_of(page) == "fr"                                            # by q, not by order
    resp = c.get("/lang/en?next=/s/kitchen/receipts%3Fx%3D1")
    assert resp.status_code == 302 and resp.headers["Location"] == "/s/kitchen/receipts?x=1"
    assert "lang=en" in resp.headers["Set-Cookie"] and "HttpOnly" in resp.headers["Set-Cookie"]
    page = c.get("/s/kitchen/receipts", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert lang_of(page) == "en" and "No top-ups yet." in page              # the cookie beats the browser
    assert c.get("/lang/fr?next=//evil.example").headers["Location"] == "/"
    page = c.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert lang_of(page) == "fr" and 'aria-current="true" lang="fr">Français<' in page
    assert '<a href="/lang/en?next=/" lang="en"' in page                    # the switcher goes back to the page
    c.get("/lang/xx")
    assert lang_of(c.get("/").get_data(as_text=True)) == "fr"               # an unknown code changes nothing


def test_the_configured_default_and_french_numbers_and_login(tmp_path):
    b = make_web_bed(tmp_path, language="fr")
    try:
        c = b.client()
        page = c.get("/landlord/login", headers={"Accept-Language": "de"}).get_data(as_text=True)
        assert lang_of(page) == "fr" and "Connexion propriétaire" in page and "Se connecter" in page
        resp = c.post("/landlord/login", data={"password": "wrong", "csrf_token": re.search(
            r'name="csrf_token" value="([^"]+)"', page).group(1), "next": "/landlord"})
        assert "Mot de passe incorrect." in resp.get_data(as_text=True)
        assert lang_of(c.get("/", headers={"Accept-Language": "en-GB"}).get_data(as_text=True)) == "en"
    finally:
        b.close()


def test_a_page_with_scripts_carries_their_strings_in_its_language(bed):
    c = bed.client()
    page = bed.landlord(c).get("/landlord", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    strings = re.search(r'<script type="application/json" id="i18n">(.*?)</script>', page).group(1)
    assert '"Reconnecting…": "Reconnexion…"' in strings.replace("\\u2026", "…")
    assert '"{amount} token": ["{amount} jeton", "{amount} jetons"]' in strings
    assert "Connexion propriétaire" not in strings                         # only what the scripts say


def _text_of(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:p|dd|span|h1|strong)>', html, re.S)
    assert found, f"no #{element_id} on the page"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def test_the_tenant_pages_and_the_unknown_socket_s_page_are_in_french(bed):
    bed.rt.ledger.pay("kitchen", 200_000)            # 200,000 Wh at 800 W: 250 h, written in days and hours
    bed.rt.watcher.poll()
    bed.loop.run_for(3)
    fr = {"Accept-Language": "fr"}
    c = bed.client()
    page = c.get("/s/kitchen", headers=fr).get_data(as_text=True)
    assert lang_of(page) == "fr"
    assert _text_of(page, "relay-t") == "Allumée" and '<span class="unit">jetons</span>' in page
    assert re.fullmatch(r"≈ 10\u00a0j \d+ h", _text_of(page, "tleft")), _text_of(page, "tleft")
    assert '<h2 id="top-h">Recharger</h2>' in page and "Temps restant à la puissance actuelle" in page
    assert "Vous avez un code de recharge\u202f?" in page and 'aria-label="Montant en jetons"' in page
    english = c.get("/s/kitchen", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert re.fullmatch(r"≈ 10 d \d+ h", _text_of(english, "tleft")) and '<span class="unit">tokens</span>' in english
    assert '<h2 id="top-h">Top up</h2>' in english

    # what tenant.js and chart.js will say, carried in the page in French
    strings = json.loads(re.search(r'<script type="application/json" id="i18n">(.*?)</script>', page).group(1))
    assert strings["Payment received:"] == "Paiement reçu\u00a0:"
    assert strings["token"] == ["jeton", "jetons"]
    assert strings[REFUSALS["invalid"]].startswith("Ce code n’est pas valable pour cette prise.")
    assert "sur la dernière heure, de {from} à {to}." in strings[
        "Chart of power in watts and balance in {unit} over the last hour, from {from} to {to}."]

    vacant = c.get("/s/laundry", headers=fr).get_data(as_text=True)   # never paid
    assert _text_of(vacant, "relay-t") == "Coupée"
    assert _text_of(vacant, "why") == "Pas encore payée\u00a0: une recharge l’allumera"
    assert _text_of(vacant, "low-h") == "Pas encore payée."

    history = c.get("/s/kitchen/history", headers=fr).get_data(as_text=True)
    assert _text_of(history, "history-title") == "Historique\u00a0: Kitchen"
    assert "Sur les 30 derniers jours, depuis le " in history and '<th scope="row">30 jours</th>' in history
    assert "<td>Dépôt</td>" in history                                 # the top-up's method, in words.html

    resp = c.get("/s/nowhere", headers=fr)
    missing = resp.get_data(as_text=True)
    assert resp.status_code == 404 and lang_of(missing) == "fr"
    assert "<h1>Prise introuvable</h1>" in missing and "Erreur 404" in missing
    assert "aucune prise nommée «\u00a0nowhere\u00a0»" in missing and ">Retour à l’accueil</a>" in missing
