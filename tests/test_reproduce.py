"""Each claim of the reproduced papers, at --quick size, is a test (issue 6)."""
import csv

import pytest

from experiments import reproduce

PAPERS = ["khanh2024", "oikonomou2025"]
CLAIMS = {"khanh2024": ["constant-step-sam-does-not-converge", "diminishing-step-sam-converges",
                        "almost-constant-radius", "variants-converge", "inexactness-bounds",
                        "kl-iterates-converge", "kl-distance-rate"],
          "oikonomou2025": ["unified-lambda-deterministic", "neighbourhood-shrinks-with-rho", "lambda-schedules",
                            "decreasing-rule-beats-constant", "importance-sampling"]}


@pytest.fixture(scope="module", params=PAPERS)
def report(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    status = reproduce.main([request.param, "--quick", "--out", str(out)])
    with open(out / "report.csv", newline="") as fh:
        rows = {row["claim"]: row for row in csv.DictReader(fh)}
    return request.param, out, status, rows


@pytest.mark.slow                       # every claim at --quick size: under a minute per paper
def test_report_lists_every_claim_with_figures(report):
    paper, out, status, rows = report
    assert list(rows) == CLAIMS[paper]
    for row in rows.values():
        if row["figure"]:
            assert (out / row["figure"]).stat().st_size > 10_000
            assert (out / row["figure"].replace(".png", ".pdf")).exists()


@pytest.mark.slow
def test_every_claim_rejects_all_its_mutants(report):
    """Each row of report.csv: PASS, and mutants_rejected n/n with n >= 1 (a claim that names no wrong
    implementation, or lets one pass, proves nothing about the method)."""
    _, _, status, rows = report
    for name, row in rows.items():
        assert row["result"] == "PASS", (name, row["result"], row["mutants_rejected"])
        rejected, total = row["mutants_rejected"].split(" ")[0].split("/")
        assert int(total) >= 1 and rejected == total, (name, row["mutants_rejected"])
    assert status == 0


@pytest.mark.slow
@pytest.mark.parametrize("index", range(max(len(names) for names in CLAIMS.values())))
def test_claim_passes(report, index):
    paper, _, status, rows = report
    if index >= len(CLAIMS[paper]):
        pytest.skip(f"{paper} has {len(CLAIMS[paper])} claims")
    name = CLAIMS[paper][index]
    assert rows[name]["result"] == "PASS", rows[name]["measured"]


def test_unknown_paper_is_one_line_exit_2(capsys, tmp_path):
    assert reproduce.main(["khanh2023", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'khanh2024'" in err[0]
    assert not (tmp_path / "x").exists()


def test_an_interrupted_reproduction_leaves_the_old_report_whole(tmp_path, monkeypatch, capsys):
    """Ctrl-C after a paper module wrote a figure: exit 130, the earlier report untouched and no
    partial figure beside it (writing into --out directly would leave the new figure next to the
    old report.md)."""
    import experiments.papers.khanh2024 as paper
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("old report")

    def interrupted(folder, quick):
        (folder / "figure.png").write_bytes(b"new")
        raise KeyboardInterrupt

    monkeypatch.setattr(paper, "run", interrupted)
    assert reproduce.main(["khanh2024", "--quick", "--out", str(out)]) == 130
    assert sorted(p.name for p in out.iterdir()) == ["report.md"] and (out / "report.md").read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_folder_that_is_not_a_report_is_not_replaced(tmp_path, capsys):
    """--out is replaced whole; a folder holding other files is refused in one line and kept."""
    (tmp_path / "mine.txt").write_text("keep me")
    assert reproduce.main(["khanh2024", "--quick", "--out", str(tmp_path)]) == 2
    assert "not a reproduction report" in capsys.readouterr().err and (tmp_path / "mine.txt").exists()
