"""`h2scope check`: baselines, policies, --update, JUnit and GitHub output, on copies of the
project's real captures in temporary directories."""

from __future__ import annotations

import json
import shutil
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from h2scope import check
from h2scope.analysis import Options, analyze

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
CLEAN = CAPTURES / "grpcio" / "unary_ok.pcap"
ZOMBIE = CAPTURES / "h2peers" / "zombie_server.pcap"
DEADLINE_STREAM = CAPTURES / "grpcio" / "deadline_stream.pcap"
NO_DEADLINE = CAPTURES / "grpcio" / "no_deadline.pcap"


def _finding(path: Path, kind: str):
    (f,) = [f for f in analyze(str(path), Options()).findings if f.kind == kind]
    return f


# Evidence packets as the stored captures show them today (they change if a capture is re-recorded).
ZOMBIE_PACKETS = _finding(ZOMBIE, "data-after-rst").packets
ZP = "packets " + ", ".join(map(str, ZOMBIE_PACKETS[:3]))


@pytest.fixture(autouse=True)
def _no_github(monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = check.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def put(src: Path, d: Path, name: str | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    dst = d / (name or src.name)
    shutil.copyfile(src, dst)
    return dst


def write_expect(d: Path, text: str) -> Path:
    p = d / check.DIR_FILE
    p.write_text(text, encoding="utf-8")
    return p


def accept(capsys, *paths) -> None:
    rc, out, _ = run(capsys, "--update", *paths)
    assert rc == 0, out


# --------------------------------------------------------------------------- baselines

def test_clean_baseline_passes_and_identity_is_stable(tmp_path, capsys):
    caps = tmp_path / "caps"
    put(CLEAN, caps)
    put(ZOMBIE, caps)
    rc, out, _ = run(capsys, caps)
    assert rc == 1 and "unbaselined" in out  # nothing accepted yet
    assert not (caps / check.DIR_FILE).exists()  # check without --update never writes

    accept(capsys, caps)
    data = tomllib.loads((caps / check.DIR_FILE).read_text())
    assert data["captures"]["unary_ok.pcap"]["baseline"] == []
    zb = data["captures"]["zombie_server.pcap"]["baseline"]
    dar = next(e for e in zb if e["kind"] == "data-after-rst")
    # identity: server endpoint and client ip (never the ephemeral port), stream, method
    assert dar["conn"] == "127.0.0.1:50071 / 127.0.0.1"
    assert (dar["stream"], dar["method"], dar["severity"]) == (1, "/demo.Demo/ServerStream", "error")
    assert dar["verdict"] == "server after peer-rst"
    assert dar["packets"] == ZOMBIE_PACKETS[:check.MAX_PACKETS_STORED]

    rc, out, _ = run(capsys, caps)
    assert rc == 0, out
    assert "2 passed" in out

    # list order is not identity: reversing the baseline changes nothing
    text = (caps / check.DIR_FILE).read_text()
    data["captures"]["zombie_server.pcap"]["baseline"] = list(reversed(zb))
    write_expect(caps, check.render_dir_file({}, [
        (n, {}, check._parse_baseline(t["baseline"], n)) for n, t in data["captures"].items()]))
    assert (caps / check.DIR_FILE).read_text() != text
    assert run(capsys, caps)[0] == 0


def test_capture_that_gains_a_finding_fails(tmp_path, capsys):
    caps = tmp_path / "caps"
    target = put(CLEAN, caps)
    accept(capsys, caps)
    shutil.copyfile(ZOMBIE, target)  # the stored capture now shows a zombie stream
    rc, out, _ = run(capsys, caps)
    assert rc == 1
    line = next(x for x in out.splitlines() if x.startswith(str(caps / "unary_ok.pcap")))
    assert "regressed" in line
    new = next(x for x in out.splitlines() if "new finding: data-after-rst" in x)
    assert "stream 1 /demo.Demo/ServerStream" in new
    assert ZP in new
    assert "new finding: work-after-deadline" in out

    rc, out, _ = run(capsys, caps, "--format", "json")
    doc = json.loads(out)
    assert rc == 1 and doc["passed"] is False
    (c,) = doc["captures"]
    assert c["status"] == "regressed"
    assert {f["kind"] for f in c["new"]} == {"data-after-rst", "work-after-deadline"}
    assert next(f for f in c["new"] if f["kind"] == "data-after-rst")["packets"] == ZOMBIE_PACKETS


def test_project_capture_swapped_for_a_zombie_fails(tmp_path, capsys):
    """The issue's "done when": the project's own grpcio captures and expectations, with
    unary_ok.pcap replaced by the zombie-stream capture."""
    caps = tmp_path / "grpcio"
    caps.mkdir()
    for p in (CAPTURES / "grpcio").iterdir():
        if p.suffix == ".pcap" or p.name == check.DIR_FILE:
            shutil.copyfile(p, caps / p.name)
    assert run(capsys, caps)[0] == 0
    shutil.copyfile(ZOMBIE, caps / "unary_ok.pcap")
    rc, out, _ = run(capsys, caps)
    assert rc == 1
    assert f"{caps / 'unary_ok.pcap'}: regressed" in out
    assert "new finding: data-after-rst stream 1 /demo.Demo/ServerStream" in out
    assert "policy data-after-rst = 0: found 1" in out
    assert ZP in out
    assert out.rstrip().endswith("1 regressed")


def test_finding_that_disappears_is_an_improvement(tmp_path, capsys):
    caps = tmp_path / "caps"
    target = put(ZOMBIE, caps, "svc.pcap")
    accept(capsys, caps)
    shutil.copyfile(CLEAN, target)  # the zombie is fixed
    rc, out, _ = run(capsys, caps)
    assert rc == 0
    assert "improved" in out
    gone = next(x for x in out.splitlines() if "gone (improvement): data-after-rst" in x)
    assert ZP in gone
    rc, out, _ = run(capsys, "--strict", caps)
    assert rc == 1 and "strict" in out


def test_changed_verdict_fails(tmp_path, capsys):
    caps = tmp_path / "caps"
    put(ZOMBIE, caps)
    accept(capsys, caps)
    p = caps / check.DIR_FILE
    p.write_text(p.read_text().replace('verdict = "server after peer-rst"', 'verdict = "server after own-rst"'))
    rc, out, _ = run(capsys, caps)
    assert rc == 1
    assert "changed verdict: data-after-rst stream 1" in out
    assert "verdict server after own-rst → server after peer-rst" in out


def test_duplicates_count_and_loose_entries():
    def item(kind, stream, sev="error", verdict=None):
        return check.Item(check.Key(kind, "10.0.0.1:443 / 10.0.0.2", stream, None), sev, verdict, [1], "s")

    items = [item("protocol-violation", None), item("protocol-violation", None), item("stream-lost", 3)]
    base = [check.Entry(check.Key("protocol-violation", "10.0.0.1:443 / 10.0.0.2", None, None), count=2),
            check.Entry(check.Key("stream-lost", "10.0.0.1:443 / 10.0.0.2", 3, None), severity="error")]
    cmp = check.compare(items, base)
    assert not (cmp.new or cmp.missing or cmp.changed)
    cmp = check.compare(items + [item("protocol-violation", None)], base)
    assert len(cmp.new) == 1 and not cmp.missing
    cmp = check.compare(items[1:], base)
    assert not cmp.new and cmp.missing[0].count == 1
    cmp = check.compare([item("stream-lost", 3, sev="warning")], base[1:])
    assert len(cmp.changed) == 1 and not cmp.new and not cmp.missing
    # another connection is another identity
    other = check.Item(check.Key("stream-lost", "10.0.0.1:443 / 10.0.0.9", 3, None), "error", None, [1], "s")
    cmp = check.compare([other], base[1:])
    assert len(cmp.new) == 1 and len(cmp.missing) == 1


# --------------------------------------------------------------------------- policies



def test_max_overrun_at_its_limit(tmp_path, capsys):
    caps = tmp_path / "caps"
    put(DEADLINE_STREAM, caps)
    accept(capsys, caps)
    base = (caps / check.DIR_FILE).read_text()
    f = _finding(DEADLINE_STREAM, "deadline-exceeded")
    us = f.details["overrun"] * 1e6  # 1327 us in the stored capture
    for limit, want in ((f"{us - 5:.0f}us", 1), (f"{us + 5:.0f}us", 0)):
        write_expect(caps, f'[defaults]\nmax-overrun = "{limit}"\n\n' + base.split(check.HEADER, 1)[1])
        rc, out, _ = run(capsys, caps)
        assert rc == want, (limit, out)
        if want:
            assert "policy max-overrun" in out and "deadline-exceeded stream 1 /demo.Demo/ServerStream" in out
            assert "packets " + ", ".join(map(str, f.packets)) in out


def test_kind_limits_defaults_and_overrides(tmp_path, capsys):
    caps = tmp_path / "caps"
    put(ZOMBIE, caps)
    put(CLEAN, caps)
    accept(capsys, caps)
    data = tomllib.loads((caps / check.DIR_FILE).read_text())
    zb = check._parse_baseline(data["captures"]["zombie_server.pcap"]["baseline"], "z")

    def expect(defaults: dict, zombie: dict) -> int:
        write_expect(caps, check.render_dir_file(defaults, [
            ("unary_ok.pcap", {}, []), ("zombie_server.pcap", zombie, zb)]))
        return run(capsys, caps)[0]

    assert expect({"data-after-rst": 0}, {}) == 1
    rc, out, _ = run(capsys, caps)
    assert "policy data-after-rst = 0: found 1" in out and ZP in out
    assert "zombie_server.pcap" in next(x for x in out.splitlines() if "regressed" in x and "pcap" in x)
    assert expect({"data-after-rst": 0}, {"data-after-rst": 1}) == 0  # capture overrides directory
    assert expect({}, {"max-severity": "warning"}) == 1
    assert expect({}, {"max-severity": "error"}) == 0
    assert expect({"work-after-deadline": 1, "data-after-rst": 1}, {}) == 0


def test_require_deadline(tmp_path, capsys):
    caps = tmp_path / "caps"
    put(NO_DEADLINE, caps)
    put(CLEAN, caps)
    accept(capsys, caps)
    data = tomllib.loads((caps / check.DIR_FILE).read_text())
    tables = [(n, {}, check._parse_baseline(t["baseline"], n)) for n, t in data["captures"].items()]
    write_expect(caps, check.render_dir_file({"require-deadline": ["^/demo\\.Demo/"]}, tables))
    assert "'^/demo\\.Demo/'" in (caps / check.DIR_FILE).read_text()  # regexes as TOML literal strings
    rc, out, _ = run(capsys, caps)
    assert rc == 1
    msgs = [x for x in out.splitlines() if "policy require-deadline" in x]
    assert len(msgs) == 2 and all("/demo.Demo/Unary" in m and "no grpc-timeout" in m for m in msgs)
    assert "unary_ok.pcap: passed" not in out and "no_deadline.pcap: regressed" in out
    write_expect(caps, check.render_dir_file({"require-deadline": ["^/other\\."]}, tables))
    assert run(capsys, caps)[0] == 0


def test_bad_expectations_are_usage_errors(tmp_path, capsys):
    caps = tmp_path / "caps"
    put(CLEAN, caps)
    for text, words in (
        ('[defaults]\ndata-after-rts = 0\n', "unknown key 'data-after-rts'"),
        ('[defaults]\nmax-overrun = "fast"\n', "not a duration"),
        ('[defaults]\nrequire-deadline = ["("]\n', "bad regular expression"),
        ('[captures."unary_ok.pcap"]\nbaseline = [{kind = "zombie"}]\n', "kind must be one of"),
        ('[captures."unary_ok.pcap"\n', "not valid TOML"),
    ):
        write_expect(caps, text)
        rc, out, err = run(capsys, caps)
        assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, err


# --------------------------------------------------------------------------- --update

def test_update_round_trips(tmp_path, capsys):
    caps = tmp_path / "caps"
    put(ZOMBIE, caps)
    put(CLEAN, caps, "clean.pcap")
    sub = caps / "more"
    put(DEADLINE_STREAM, sub)
    (caps / "notes.txt").write_text("not a capture")
    (caps / "node_modules").mkdir()
    (caps / "node_modules" / "junk.pcap").write_bytes(b"not a capture")
    write_expect(caps, '[defaults]\nnote = "kept"\nprotocol-violation = 0\n\n'
                       '[captures."clean.pcap"]\ndata-after-rst = 0\n')
    rc, out, _ = run(capsys, "--update", caps)
    assert rc == 0, out
    assert "updated: new baseline" in out and "+ data-after-rst stream 1" in out
    assert f"wrote {caps / check.DIR_FILE}" in out and f"wrote {sub / check.DIR_FILE}" in out
    first = (caps / check.DIR_FILE).read_text()
    data = tomllib.loads(first)
    assert data["defaults"] == {"note": "kept", "protocol-violation": 0}  # policies survive
    assert data["captures"]["clean.pcap"] == {"data-after-rst": 0, "baseline": []}
    assert run(capsys, caps)[0] == 0

    rc, out, _ = run(capsys, "--update", caps)
    assert rc == 0 and "nothing written" in out
    assert (caps / check.DIR_FILE).read_text() == first

    # a capture that is gone: check fails, --update drops its table
    (caps / "clean.pcap").unlink()
    rc, out, _ = run(capsys, caps)
    assert rc == 1 and "missing" in out
    rc, out, _ = run(capsys, "--update", caps)
    assert rc == 0 and "removed the expectations of clean.pcap" in out
    assert "clean.pcap" not in tomllib.loads((caps / check.DIR_FILE).read_text())["captures"]


def test_update_of_one_capture_keeps_the_others_comments(tmp_path, capsys):
    caps = tmp_path / "caps"
    put(ZOMBIE, caps)
    put(DEADLINE_STREAM, caps)
    assert run(capsys, "--update", caps)[0] == 0
    before = (caps / check.DIR_FILE).read_text()
    comments = [line for line in before.splitlines() if line.startswith("  # ")]
    assert len(comments) >= 2  # one summary above each accepted finding
    data = tomllib.loads(before)
    zombie_name = ZOMBIE.name
    text = before.replace(f'[captures."{zombie_name}"]', f'[captures."{zombie_name}"]\nnote = "changed"', 1)
    # Forget one capture's baseline, then update only that capture.
    other = next(n for n in data["captures"] if n != zombie_name)
    start = text.index(f'[captures."{other}"]')
    base = text.index("baseline = [", start)
    end = text.index("\n]\n", base) + 3
    write_expect(caps, text[:base] + "baseline = []\n" + text[end:])
    assert run(capsys, "--update", caps / other)[0] == 0
    after = (caps / check.DIR_FILE).read_text()
    assert [line for line in after.splitlines() if line.startswith("  # ")] == comments
    assert 'note = "changed"' in after


def test_expectations_beside_the_capture(tmp_path, capsys):
    caps = tmp_path / "caps"
    z = put(ZOMBIE, caps)
    beside = caps / ("zombie_server.pcap" + check.BESIDE_SUFFIX)
    beside.write_text('data-after-rst = 1\nbaseline = []\n')
    rc, out, _ = run(capsys, z)
    assert rc == 1 and str(beside) in out
    accept(capsys, z)
    data = tomllib.loads(beside.read_text())
    assert data["data-after-rst"] == 1 and len(data["baseline"]) == 2
    assert not (caps / check.DIR_FILE).exists()
    assert run(capsys, caps)[0] == 0


# --------------------------------------------------------------------------- CI output

def _mixed(tmp_path: Path) -> Path:
    caps = tmp_path / "caps"
    put(CLEAN, caps, "a_clean.pcap")
    b = put(CLEAN, caps, "b_swapped.pcap")
    put(ZOMBIE, caps, "c_zombie.pcap")
    return caps, b


def test_junit_report(tmp_path, capsys):
    caps, b = _mixed(tmp_path)
    accept(capsys, caps)
    shutil.copyfile(ZOMBIE, b)
    (caps / "d_broken.pcap").write_bytes(b"this is no capture at all")
    report = tmp_path / "junit.xml"
    rc, out, _ = run(capsys, caps, "--junit", report)
    assert rc == 2  # an unreadable capture outranks the regression
    root = ET.parse(report).getroot()
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "1")
    cases = {Path(c.get("name")).name: c for c in suite.findall("testcase")}
    assert set(cases) == {"a_clean.pcap", "b_swapped.pcap", "c_zombie.pcap", "d_broken.pcap"}
    assert cases["a_clean.pcap"].find("failure") is None and cases["c_zombie.pcap"].find("failure") is None
    fail = cases["b_swapped.pcap"].find("failure")
    assert "b_swapped.pcap" in fail.get("message") and "data-after-rst" in fail.get("message")
    assert ZP in fail.text
    assert cases["d_broken.pcap"].find("error") is not None

    (caps / "d_broken.pcap").unlink()
    rc, _, _ = run(capsys, caps, "--junit", report)
    assert rc == 1
    suite = ET.parse(report).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "0")


def test_github_annotations(tmp_path, capsys, monkeypatch):
    caps, b = _mixed(tmp_path)
    accept(capsys, caps)
    rc, out, _ = run(capsys, caps)
    assert rc == 0 and "::" not in out
    shutil.copyfile(ZOMBIE, b)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    rc, out, _ = run(capsys, caps)
    assert rc == 1
    ann = [x for x in out.splitlines() if x.startswith("::")]
    assert len(ann) == 1
    assert ann[0].startswith(f"::error file={b},title=h2scope check%3A regressed::")
    assert "data-after-rst" in ann[0] and "%0A" in ann[0] and "\n" not in ann[0]
    rc, out, err = run(capsys, caps, "--format", "json")
    json.loads(out)  # annotations go to stderr so stdout stays JSON
    assert err.startswith("::error file=")


def test_unreadable_and_usage_errors_exit_2(tmp_path, capsys):
    caps = tmp_path / "caps"
    broken = caps / "broken.pcap"
    caps.mkdir()
    broken.write_bytes(b"\xd4\xc3\xb2")  # shorter than a pcap header
    rc, out, err = run(capsys, broken)
    assert rc == 2 and "broken.pcap" in out and "error" in out
    rc, out, err = run(capsys, tmp_path / "nope")
    assert rc == 2 and err.startswith("h2scope: error: no such file or directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = run(capsys, empty)
    assert rc == 2 and "no captures" in err
    with pytest.raises(SystemExit) as e:
        check.main([])
    assert e.value.code == 2
    capsys.readouterr()


def test_project_captures_pass():
    """The dogfood gate: the project's own captures against their stored expectations."""
    args = ["--quiet", str(CAPTURES)]
    assert check.main(args) == 0
