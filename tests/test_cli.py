"""run_toy and experiments.compare as a user runs them: outputs, reproducibility, bad input."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import call, one_line

from convergence.errors import InputError
from convergence.trace import COLUMNS, read_csv
from experiments import run_toy


def toy(tmp_path, *flags):
    return run_toy.main(["--no-progress", "--out", str(tmp_path), *flags])


def test_run_toy_writes_trace_summary_and_figures(tmp_path, capsys):
    assert toy(tmp_path, "--method", "sam", "--stepsize", "diminishing", "--iters", "3000", "--runs", "3") == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["figure.pdf", "figure.png", "summary.json", "trace.csv"]
    table = read_csv(tmp_path / "trace.csv")
    assert set(table["run"]) == {0, 1, 2} and table["iter"].max() == 3000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["method"] == "sam" and summary["seed"] == 0
    assert {"numpy", "git_commit", "python"} <= set(summary["provenance"])
    assert len(summary["runs"]) == 3 and all(r["status"] for r in summary["runs"])
    assert "verdicts" in capsys.readouterr().out
    assert (tmp_path / "trace.csv").read_text().splitlines()[0] == ",".join(COLUMNS)


@pytest.mark.slow
def test_same_seed_gives_identical_trace_bytes(tmp_path):
    flags = ["--method", "sam", "--problem", "sinpl", "--dim", "3", "--iters", "2000", "--runs", "4",
             "--seed", "7"]
    toy(tmp_path / "a", *flags)
    toy(tmp_path / "b", *flags)
    assert (tmp_path / "a/trace.csv").read_bytes() == (tmp_path / "b/trace.csv").read_bytes()
    toy(tmp_path / "c", *flags[:-1], "8")
    assert (tmp_path / "a/trace.csv").read_bytes() != (tmp_path / "c/trace.csv").read_bytes()


@pytest.mark.parametrize("flags,message", [
    (["--method", "sma"], "unknown method 'sma' (did you mean 'sam'?)"),
    (["--problem", "rosenbrok"], "unknown problem 'rosenbrok' (did you mean 'rosenbrock'?)"),
    (["--stepsize", "diminshing"], "unknown --stepsize 'diminshing' (did you mean 'diminishing'?)"),
    (["--rho-schedule", "Constant"], "unknown --rho-schedule 'Constant' (did you mean 'constant'?)"),
    (["--rho", "-0.1"], "--rho must be a finite non-negative number"),
    (["--rho", "nan"], "--rho must be a finite non-negative number"),
    (["--lr", "0"], "--lr must be a finite positive number"),
    (["--lr", "inf"], "--lr must be a finite positive number"),
    (["--iters", "0"], "--iters must be an integer in [1, 1e+12], got 0"),
    (["--problem", "rosenbrock", "--dim", "1"], "does not support dim=1"),
    (["--stepsize", "0.1/(k"], "--stepsize '0.1/(k' cannot be parsed"),
    (["--stepsize", "open(k)"], "unknown name 'open'"),
    (["--stepsize", "1-k"], "must stay positive"),
    (["--runs", "100000000000"], "runs x dim needs about 5.96e+03 GiB, more than the"),
    (["--problem", "quadratic", "--dim", "100000000000"], "runs x dim needs about 9.54e+04 GiB"),
    (["--seed", "100000000000000000000000"], "--seed must be an integer in [0, 2^63)"),
    (["--stepsize", "exp(k)"], "--stepsize 'exp(k)' is undefined at k=710: give a schedule defined"),
    (["--stepsize", "exp(k)", "--iters", "200"], "'exp(k)' is undefined at k=710"),
    (["--stepsize", "1/(k-5)**2"], "--stepsize '1/(k-5)**2' is undefined at k=5"),
    (["--stepsize", "min(0.1,0.05*(k-2)*(k-5)+0.01)"], "must stay positive at every k; 'min(0.1,0.05*(k-2)*(k-5)+0.01)' is -0.09 at k=3"),
    (["--method", "unified", "--lam", "1/k"], "--lam '1/k' is undefined at k=0"),
    (["--method", "unified", "--lam", "5*k+2"], "--lam must lie in [0, 1] at every k; '5*k+2' is 2 at k=0"),
    (["--stepsize", "(" * 900 + "0.1" + ")" * 900], "nested more than 100 levels deep"),
    (["--stepsize", "(" * 3000 + "0.1" + ")" * 3000], "--stepsize is 6003 characters long"),
    (["--stepsize", "9**9**9"], "--stepsize '9**9**9' cannot be parsed: (9)**(387420489) is not a finite real"),
    (["--stepsize", "0.1/(k+1)", "--lr", "0.5"], "--lr applies to --stepsize constant, diminishing or pl-decreasing"),
    (["--out", ""], "--out is empty: give a folder name"),
    (["--stepsize", "constant", "--decay", "0.9"], "--decay applies to --stepsize diminishing only"),
    (["--stepsize", "constant", "--decay", "0.6"], "--decay applies to --stepsize diminishing only"),
    (["--stepsize", "constant", "--rho-decay", "0.9"], "--rho-decay applies to --rho-schedule diminishing only"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, flags, message):
    """In-process, as tests/test_bad_inputs.py's table (the entry point itself is run as a process by
    the tests below and by the README test)."""
    out = tmp_path / "out"
    assert call("run_toy", ["--out", str(out), *flags]) == 2
    assert message in one_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize("flags,message", [
    (["--stepsize", "log(k)"], "--stepsize 'log(k)' is undefined at k=0"),
    (["--stepsize", "1/(k-5)**2"], "--stepsize '1/(k-5)**2' is undefined at k=5"),
    (["--rho", "0.05*(k-5)"], "--rho must stay positive at every k; '0.05*(k-5)' is -0.25 at k=0"),
    (["--mu", "0.5", "--gamma-star", "inf", "--rho-star", "inf"], "--gamma-star must be a finite positive number"),
    (["--mu", "0.5", "--gamma-star", "1", "--rho-star", "-1"], "--rho-star must be a finite positive number"),
    (["--mu", "5"], "--mu 5 exceeds --L 1: give mu <= L"),
    (["--mu", "0.5", "--gamma-star", "1"], "--gamma-star and --rho-star go together"),
])
def test_check_schedule_bad_input_is_one_line_exit_2(capsys, flags, message):
    base = {"--method": "usam", "--stepsize": "0.1", "--rho": "0.05", "--L": "1"}
    base.update(zip(flags[::2], flags[1::2]))
    assert call("check_schedule", list(sum(base.items(), ()))) == 2
    assert message in one_line(capsys.readouterr().err)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (unwritable even for root)")
def test_unwritable_out_is_the_only_line_even_with_a_theory_warning():
    proc = subprocess.run([sys.executable, "-m", "experiments.run_toy", "--stepsize", "constant",
                           "--out", "/proc/samconv-x/y"], capture_output=True, text=True)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "cannot write to --out /proc/samconv-x/y" in lines[0]


def test_unwritable_out_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert toy(blocker / "sub") == 2


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (unwritable even for root)")
def test_out_in_a_folder_that_refuses_files_is_refused_before_work():
    from experiments.common import check_writable
    with pytest.raises(InputError, match="cannot write to --out /proc/samconv-x"):
        check_writable(Path("/proc/samconv-x/run"))


@pytest.mark.slow
def test_compare_puts_several_folders_on_one_figure(tmp_path):
    for step in ("constant", "diminishing"):
        toy(tmp_path / step, "--stepsize", step, "--iters", "2000", "--runs", "2", "--lr", "0.5")
    from experiments import compare
    assert compare.main([str(tmp_path / "constant"), str(tmp_path / "diminishing"),
                         "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp.png").stat().st_size > 10_000 and (tmp_path / "cmp.pdf").exists()
    assert compare.main([str(tmp_path / "missing")]) == 2
    for bad in (str(tmp_path), str(tmp_path) + "/", ""):            # a folder or nothing as the stem
        assert compare.main([str(tmp_path / "constant"), "--out", bad]) == 2
    assert compare.main([str(tmp_path / "constant"), "--labels", "a,b"]) == 2


def test_figure_band_is_the_median_over_runs(tmp_path):
    toy(tmp_path, "--iters", "100", "--runs", "5")
    from figures.convergence import band
    table = read_csv(tmp_path / "trace.csv")
    ks, med, lo, hi = band(table, "grad_norm")
    at0 = table["grad_norm"][table["iter"] == 0]
    assert med[0] == pytest.approx(np.median(at0)) and lo[0] <= med[0] <= hi[0]


def test_log_axes_are_labelled_in_unicode_powers_of_ten():
    """Axes over two decades or more: labels 10⁻ⁿ in Unicode at powers of ten only, at most ~6;
    an axis within one decade keeps matplotlib's own labels (with log_ticks applied to it, it would
    show one label or none)."""
    from figures.convergence import log_ticks, plt, power_of_ten
    assert [power_of_ten(v) for v in (1e-5, 1.0, 1e5, 3e-3, 0.0)] == ["10⁻⁵", "10⁰", "10⁵", "", ""]
    fig, (wide, narrow) = plt.subplots(1, 2)
    wide.plot([1, 1e5], [1e-16, 1.0])
    narrow.plot([1, 10], [0.04, 0.2])
    for ax in (wide, narrow):
        ax.set(xscale="log", yscale="log")
        log_ticks(ax)
    fig.canvas.draw()
    lo, hi = wide.get_ylim()
    labels = [t.get_text() for t in wide.get_yticklabels() if t.get_text() and lo <= t.get_position()[1] <= hi]
    assert 3 <= len(labels) <= 7 and all(t.startswith("10") and "$" not in t for t in labels)
    assert "10⁻¹⁶" in labels or "10⁻¹⁵" in labels or "10⁻¹²" in labels
    assert any("$" in t.get_text() for t in narrow.get_yticklabels())
    plt.close(fig)


def test_divergence_is_reported_and_the_other_runs_finish(tmp_path, capsys):
    """Styblinski-Tang with a large step: runs blow up, are marked diverged; exit status 3."""
    assert toy(tmp_path, "--problem", "styblinski_tang", "--lr", "0.5", "--iters", "200", "--runs", "4") == 3
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status_counts"].get("diverged", 0) >= 1
    assert "runs diverged (exit status 3)" in capsys.readouterr().out
    assert toy(tmp_path / "ok", "--problem", "styblinski_tang", "--lr", "0.001", "--iters", "200",
               "--runs", "4") == 0


def test_figure_medians_count_diverged_runs_as_infinite():
    """3 of 5 runs blow up at k = 2: from there the median is infinite (not drawn) and the 90 % line
    too, while the 10 % line follows the survivors. A median over survivors only (the old band) would
    show a converging curve for a method that mostly diverges."""
    from figures.convergence import band, run_count
    # runs 0, 1 recorded at k = 0..3; runs 2-4 at k = 0, 1 and their blown-up iterate at k = 2
    runs = np.array([0] * 4 + [1] * 4 + [2] * 3 + [3] * 3 + [4] * 3)
    its = np.array([0, 1, 2, 3] * 2 + [0, 1, 2] * 3)
    vals = np.array([1.0, 0.5, 0.25, 0.125] * 2 + [1.0, 0.5, 1e300] * 3)
    status = np.array(["converged"] * 8 + ["diverged"] * 9, dtype=object)
    table = {"iter": its, "run": runs, "status": status, "grad_norm": vals}
    ks, med, lo, hi = band(table, "grad_norm")
    assert list(ks) == [0, 1, 2, 3]
    assert med[1] == 0.5 and np.isinf(med[2]) and np.isinf(hi[3]) and lo[3] == 0.125
    assert run_count(table) == "5 runs, 3 diverged"


def test_backend_jax_without_jax_says_how_to_install(tmp_path, capsys, monkeypatch):
    """Without JAX installed, --backend jax is one line naming the extra, exit 2, nothing written."""
    monkeypatch.setitem(sys.modules, "jax", None)          # import jax now raises ImportError
    from experiments.run_toy import main
    assert main(["--backend", "jax", "--iters", "10", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install -e ".[jax]"' in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_figure_worker_draws_the_in_process_bytes(monkeypatch):
    """The helper process that run_toy starts draws byte-identical PNG and PDF to drawing in-process
    (a helper with other rcParams, another layout or a PDF with a date would not; drawing here is
    made to fail meanwhile, so a helper that fails cannot hide behind the fallback), and where it
    died, the figure is drawn in-process."""
    import figures.worker
    from convergence.runner import run
    from convergence.spec import toy_run
    from convergence.trace import table
    from figures.worker import FigureWorker, draw
    trace = run(toy_run(problem="quadratic", method="sam", stepsize="diminishing", iters=300, runs=3))
    request = ([("sam", table([trace]))], "SAM ρ", [])
    expected = draw(*request)
    assert expected["png"].startswith(b"\x89PNG") and expected["pdf"].startswith(b"%PDF")
    with FigureWorker(spawn=True) as worker, monkeypatch.context() as patch:
        patch.setattr(figures.worker, "draw", lambda *args: pytest.fail("drawn in-process: the helper failed"))
        assert worker.request(*request)() == expected
    with FigureWorker(spawn=True) as worker:
        worker.close()                                      # the helper is gone
        assert worker.request(*request)() == expected


def test_a_figure_legend_of_many_rows_makes_the_figure_taller():
    """The panels keep their height and the legend its rows: 31 curves (11 legend rows) under a
    title fit (fixed margins on a fixed height would put the bottom above the top)."""
    from figures.convergence import PANEL_HEIGHT, plot_tables, plt
    tables = [(f"run {i}", {"iter": np.array([0, 1, 2]), "run": np.zeros(3, int), "status": np.array(["converged"] * 3),
                            "grad_norm": np.array([1.0, 0.5, 0.25]), "f_gap": np.array([1.0, 0.25, 0.06]),
                            "dist_to_opt": np.array([1.0, 0.5, 0.25])}) for i in range(31)]
    fig = plot_tables(tables, "many curves")
    one = plot_tables(tables[:1], "one curve")
    assert one.get_size_inches()[1] == pytest.approx(3.0)
    assert fig.get_size_inches()[1] == pytest.approx(3.0 + 0.17 * 10)
    for f in (fig, one):
        panel = f.axes[0].get_position()
        assert panel.height * f.get_size_inches()[1] == pytest.approx(PANEL_HEIGHT)
        plt.close(f)


def test_a_long_title_widens_the_figure_and_no_finite_value_still_draws():
    """A one-panel figure (no f* or x*) under a user's long formula is widened to its title, which
    the fixed margins alone would clip at both edges; a run with no finite value gets an empty panel
    that says so, not a crash of the log axes."""
    from figures.convergence import encode_as, plot_tables, plt
    table = {"iter": np.array([0, 1, 2]), "run": np.zeros(3, int), "status": np.array(["converged"] * 3),
             "grad_norm": np.array([1.0, 0.5, 0.25]), "f_gap": np.full(3, np.nan), "dist_to_opt": np.full(3, np.nan)}
    title = "SAM on expr:(x1-1)**2 + 0.5*(x2+2)**2 + 0.25*(x3-4)**4 (d=3), 0.5/(k+1)**0.75 steps"
    fig = plot_tables([("sam", table)], title)
    width = fig._suptitle.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi
    assert len(fig.axes) == 1 and fig.get_size_inches()[0] >= width > 3.4
    plt.close(fig)
    empty = {**table, "grad_norm": np.full(3, np.inf), "status": np.array(["stalled"] * 3)}
    fig = plot_tables([("sam", empty)], "no finite value")
    assert encode_as(fig, "png").startswith(b"\x89PNG") and fig.axes[0].texts[0].get_text() == "no finite value"
    plt.close(fig)
