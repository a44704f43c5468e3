"""The evaluation report: ``report.md`` (tables), ``results.json``, ``charts.html`` (plotly) and PNG charts.

The markdown ends with the ablation table (means over the evaluated scenes).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import plotly.graph_objects as go

from worldstereo.atomic import write_text_atomic
from worldstereo.eval.ablation_results import ABLATION_CONFIGS, ConfigResult, EvalReport, SceneResult
from worldstereo.eval.png_charts import PALETTE, bar_chart, line_chart

__all__ = ["ablation_table", "report_markdown", "results_dict", "write_report"]

_ORDER_METRICS = (("psnr_revisited", "revisited-region PSNR"), ("consistency_psnr", "cross-path consistency PSNR"))


def _f(v: float, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _scene_tables(s: SceneResult, tau_frac: float, tau_max_frac: float) -> str:
    out = [f"### Scene `{s.scene}` (scene depth {s.scene_depth:.2f}, paths {', '.join(s.paths)}; {s.seconds:.0f} s)", ""]
    out.append(
        _table(
            ["config", "PSNR", "SSIM", "PSNR revisited", "SSIM revisited", "consistency PSNR"],
            [
                [c.config.name, _f(c.psnr), _f(c.ssim, 3), _f(c.psnr_revisited), _f(c.ssim_revisited, 3), _f(c.consistency_psnr)]
                for c in s.configs
            ]
            + [["oracle (reference)", "-", "-", "-", "-", _f(s.oracle_consistency_psnr)]],
        )
    )
    out.append("")
    rows = []
    for c in s.configs:
        r = c.reconstruction
        sc = r.at(c.tau) if r else None
        rows.append(
            [
                c.config.name,
                str(r.num_predicted if r else 0),
                _f(sc.precision, 3) if sc else "n/a",
                _f(sc.recall, 3) if sc else "n/a",
                _f(sc.f1, 3) if sc else "n/a",
                _f(r.auc_f1, 3) if r else "n/a",
            ]
        )
    out.append(
        f"GGM reconstruction against {s.surface_samples} true-surface samples seen by the cameras; "
        f"tau = {tau_frac:g} x scene depth, AUC of F1 over tau in (0, {tau_max_frac:g} x depth]:"
    )
    out.append("")
    out.append(_table(["config", "GGM points", "precision", "recall", "F1", "AUC (F1)"], rows))
    out.append("")
    rows = []
    for c in s.configs:
        e = c.camera
        rows.append(
            [c.config.name]
            + ([_f(e.rot_err_deg), _f(e.trans_err_deg), _f(e.ate, 4), f"{e.num_failed}/{e.num_pairs}"] if e else ["n/a"] * 4)
            + [str(c.final_points), str(c.frames[-1].ssm_entries if c.frames else 0), _f(c.ms_per_frame, 0)]
        )
    e = s.oracle_camera
    rows.append(
        ["oracle (reference)"]
        + ([_f(e.rot_err_deg), _f(e.trans_err_deg), _f(e.ate, 4), f"{e.num_failed}/{e.num_pairs}"] if e else ["n/a"] * 4)
        + ["-", "-", "-"]
    )
    out.append(
        _table(["config", "RotErr (deg)", "TransErr (deg)", "ATE", "failed pairs", "final GGM points", "SSM tokens", "ms / frame"], rows)
    )
    return "\n".join(out)


def ablation_table(report: EvalReport) -> str:
    """Markdown table of every arm, means over the evaluated scenes."""
    m = report.mean_over_scenes
    rows = []
    for cfg in ABLATION_CONFIGS:
        n = cfg.name
        rows.append(
            [
                n,
                _f(m(n, "psnr")),
                _f(m(n, "ssim"), 3),
                _f(m(n, "psnr_revisited")),
                _f(m(n, "ssim_revisited"), 3),
                _f(m(n, "consistency_psnr")),
                _f(m(n, "precision"), 3),
                _f(m(n, "recall"), 3),
                _f(m(n, "f1"), 3),
                _f(m(n, "auc"), 3),
                _f(m(n, "rot_err_deg")),
                _f(m(n, "trans_err_deg")),
                _f(m(n, "ate"), 4),
                _f(m(n, "final_points"), 0),
                _f(m(n, "ms_per_frame"), 0),
            ]
        )
    header = [
        "config", "PSNR", "SSIM", "PSNR rev.", "SSIM rev.", "consistency", "P", "R", "F1", "AUC",
        "RotErr", "TransErr", "ATE", "GGM points", "ms/frame",
    ]  # fmt: skip
    return _table(header, rows)


def report_markdown(report: EvalReport, charts: list[Path] | None = None) -> str:
    """The whole ``report.md`` text (ends with the ablation table)."""
    st = report.settings
    lines = [
        "# WorldStereo memory ablation",
        "",
        f"Setting: {'quick' if st.quick else 'full'}; scenes {', '.join(st.scenes)}; {st.width}x{st.height}; "
        f"four reference paths (eloop rx=ry={st.eloop_radius:g} x depth, orbit up {st.up_angle:g} deg, "
        f"orbit right/left {st.side_angle:g} deg) of {st.frames_per_path} frames each, in that order, one shared memory "
        f"per config; seed {st.seed}; generator `warp`; total {report.seconds:.0f} s.",
        "",
        "Input of every config: the scene's start view (anti-aliased image, exact depth, camera). Reference: the "
        "oracle (anti-aliased ground-truth render of the same camera).",
        "",
        "- **PSNR / SSIM**: per frame against the oracle, averaged over the generated frames (the first one, the "
        "input camera itself, left out; per-frame PSNR capped at 60 dB). SSIM: 11x11 Gaussian window, sigma 1.5.",
        "- **revisited**: inside the pixels whose true surface point was visible in an earlier frame of the "
        f"exploration (input view or any previous frame), by a {st.depth_tolerance:g} relative depth test.",
        "- **consistency**: PSNR between generated frames of a later path and frames of the earlier paths, where "
        "both see the same surface (true correspondence, bilinear sampling), pooled over "
        f"{st.consistency_frames} frames per later path x {st.consistency_references} frames per earlier path. "
        "The oracle row is the same measure on true renders: it is not a ceiling (a memory that copies pixels can "
        "agree with itself better than two renders of fine texture resampled across views).",
        "- **GGM reconstruction**: the final GGM point cloud against true-surface samples visible from at least one "
        "camera of the exploration: precision = share of GGM points within tau of the surface, recall = share of "
        "surface samples within tau of a GGM point; AUC = mean F1 over 50 thresholds up to tau_max.",
        "- **camera errors**: poses recovered from consecutive generated frames (SIFT, essential matrix, "
        "`recoverPose`) against the commanded cameras: RotErr / TransErr = mean relative rotation / translation-"
        "direction angle error (deg); ATE = RMSE of camera centres (scene units) after Sim(3) alignment of the "
        "chained unit-length steps; mean over the four paths. The oracle row is the pose pipeline's own floor.",
        "",
        "## Per scene",
        "",
    ]
    for s in report.scenes:
        lines += [_scene_tables(s, st.tau, st.tau_max), ""]
    if charts:
        lines += ["## Charts", "", "Interactive versions: [charts.html](charts.html).", ""]
        lines += [f"![{p.stem}]({p.name})" for p in charts]
        lines.append("")
    lines += ["## Ablation", ""]
    for key, label in _ORDER_METRICS:
        vals = [report.mean_over_scenes(c.name, key) for c in ABLATION_CONFIGS]
        verdict = "holds" if report.ordering_holds(key) else "DOES NOT hold"
        chain = " < ".join(f"{c.name} {_f(v)} dB" for c, v in zip(ABLATION_CONFIGS, vals, strict=True))
        lines.append(f"- Predicted ordering in {label} {verdict}: {chain}.")
    lines += ["", f"Means over {len(report.scenes)} scene(s); P/R/F1 at tau = {st.tau:g} x scene depth:", ""]
    lines.append(ablation_table(report))
    return "\n".join(lines) + "\n"


def _config_summary(c: ConfigResult) -> dict:
    r = c.reconstruction
    return {
        "psnr": c.psnr,
        "ssim": c.ssim,
        "psnr_revisited": c.psnr_revisited,
        "ssim_revisited": c.ssim_revisited,
        "consistency_psnr": c.consistency_psnr,
        "consistency_pixels": c.consistency_pixels,
        "ms_per_frame": c.ms_per_frame,
        "final_points": c.final_points,
        "tau": c.tau,
        "reconstruction": None
        if r is None
        else {
            "taus": r.taus.tolist(),
            "precision": r.precision.tolist(),
            "recall": r.recall.tolist(),
            "f1": r.f1.tolist(),
            "auc_f1": r.auc_f1,
            "at_tau": asdict(r.at(c.tau)),
            "num_predicted": r.num_predicted,
            "num_truth": r.num_truth,
        },
        "camera": None if c.camera is None else asdict(c.camera),
        "frames": [asdict(f) for f in c.frames],
    }


def results_dict(report: EvalReport) -> dict:
    """Everything in the report as JSON-ready data (NaN/inf become null / large floats per ``json``)."""
    return {
        "settings": asdict(report.settings),
        "seconds": report.seconds,
        "ordering": {k: report.ordering_holds(k) for k, _ in _ORDER_METRICS},
        "means": {
            c.name: {k: report.mean_over_scenes(c.name, k) for k in (
                "psnr", "ssim", "psnr_revisited", "ssim_revisited", "consistency_psnr", "precision", "recall", "f1",
                "auc", "rot_err_deg", "trans_err_deg", "ate", "final_points", "ms_per_frame")}  # fmt: skip
            for c in ABLATION_CONFIGS
        },
        "scenes": [
            {
                "scene": s.scene,
                "scene_depth": s.scene_depth,
                "paths": s.paths,
                "seconds": s.seconds,
                "surface_samples": s.surface_samples,
                "oracle_consistency_psnr": s.oracle_consistency_psnr,
                "oracle_camera": None if s.oracle_camera is None else asdict(s.oracle_camera),
                "configs": {c.config.name: _config_summary(c) for c in s.configs},
            }
            for s in report.scenes
        ],
    }


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------- charts
def _chart_data(report: EvalReport) -> list[dict]:
    """Chart specs shared by the plotly and PNG renderers: kind, name, title, labels, series."""
    names = [c.name for c in ABLATION_CONFIGS]
    m = report.mean_over_scenes
    specs = [
        {
            "kind": "bar",
            "name": "quality",
            "title": "Image quality and consistency (mean over scenes)",
            "y_label": "PSNR (dB)",
            "groups": ["overall", "revisited", "cross-path consistency"],
            "series": {n: [m(n, "psnr"), m(n, "psnr_revisited"), m(n, "consistency_psnr")] for n in names},
        },
        {
            "kind": "bar",
            "name": "time_per_frame",
            "title": "Time per frame (mean over scenes)",
            "y_label": "ms",
            "groups": ["ms / frame"],
            "series": {n: [m(n, "ms_per_frame")] for n in names},
        },
    ]
    for s in report.scenes:
        x = list(range(1, len(s.configs[0].frames) + 1))
        specs.append(
            {
                "kind": "line",
                "name": f"psnr_{s.scene}",
                "title": f"{s.scene}: PSNR per frame vs oracle (paths {', '.join(s.paths)})",
                "x_label": "frame of the exploration",
                "y_label": "PSNR (dB)",
                "series": {c.config.name: (x, [min(f.psnr, 60.0) for f in c.frames]) for c in s.configs},
            }
        )
        specs.append(
            {
                "kind": "line",
                "name": f"memory_{s.scene}",
                "title": f"{s.scene}: GGM size over time",
                "x_label": "frame of the exploration",
                "y_label": "GGM points",
                "series": {c.config.name: (x, [f.ggm_points for f in c.frames]) for c in s.configs},
                "y_from_zero": True,
            }
        )
        specs.append(
            {
                "kind": "line",
                "name": f"reconstruction_{s.scene}",
                "title": f"{s.scene}: GGM F1 vs distance threshold",
                "x_label": "tau (scene units)",
                "y_label": "F1",
                "series": {
                    c.config.name: (c.reconstruction.taus.tolist(), c.reconstruction.f1.tolist())
                    for c in s.configs
                    if c.reconstruction is not None
                },
                "y_from_zero": True,
            }
        )
    return specs


def _plotly_figure(spec: dict) -> go.Figure:
    fig = go.Figure()
    for i, (name, vals) in enumerate(spec["series"].items()):
        colour = PALETTE[i % len(PALETTE)]
        if spec["kind"] == "bar":
            fig.add_bar(name=name, x=spec["groups"], y=list(vals), marker_color=colour)
        else:
            xs, ys = vals
            fig.add_scatter(name=name, x=list(xs), y=list(ys), mode="lines+markers", line={"color": colour})
    fig.update_layout(
        title=spec["title"],
        yaxis_title=spec["y_label"],
        xaxis_title=spec.get("x_label", ""),
        barmode="group",
        template="plotly_white",
        width=900,
        height=500,
    )
    return fig


def write_report(report: EvalReport, out_dir: str | Path) -> list[Path]:
    """Write ``report.md``, ``results.json``, ``charts.html`` and one PNG per chart into ``out_dir``.

    Returns:
        the written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = _chart_data(report)
    pngs: list[Path] = []
    html_parts: list[str] = []
    for i, spec in enumerate(specs):
        png = out / f"{spec['name']}.png"
        if spec["kind"] == "bar":
            bar_chart(png, spec["title"], spec["y_label"], spec["groups"], spec["series"])
        else:
            line_chart(png, spec["title"], spec["x_label"], spec["y_label"], spec["series"], spec.get("y_from_zero", False))
        pngs.append(png)
        fig = _plotly_figure(spec)
        html_parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>WorldStereo memory ablation</title></head><body>"
        + "\n".join(html_parts)
        + "</body></html>"
    )
    write_text_atomic(out / "charts.html", html)
    write_text_atomic(out / "results.json", json.dumps(_json_safe(results_dict(report)), indent=1))
    write_text_atomic(out / "report.md", report_markdown(report, pngs))
    return [out / "report.md", out / "results.json", out / "charts.html", *pngs]
