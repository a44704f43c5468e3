"""``worldstereo eval``: the memory ablation, and its ``fidelity``, ``fill`` and ``dataset`` subcommands (wired to :mod:`worldstereo.eval`)."""

from __future__ import annotations

import argparse
from typing import Any

from worldstereo.cli.common import Parser
from worldstereo.eval.ablation import add_eval_arguments, eval_command
from worldstereo.eval.dataset_consistency import add_dataset_arguments, dataset_command
from worldstereo.eval.fidelity import add_fidelity_arguments, fidelity_command
from worldstereo.eval.fill_quality import add_fill_arguments, fill_command

__all__ = ["add_eval_parser"]


def add_eval_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``eval`` subcommand (ablation) with ``fidelity``, ``fill`` and ``dataset``."""
    e = sub.add_parser("eval", parents=[common], help="memory ablation (no memory / +GGM / +GGM+SSM) and report",
                       description="Run the memory ablation over procedural scenes and the four reference paths "
                                   "and write report.md, results.json and charts.")
    add_eval_arguments(e)
    e.set_defaults(func=eval_command)
    esub = e.add_subparsers(dest="eval_command", parser_class=Parser, metavar="{fidelity,fill,dataset}")
    fid = esub.add_parser(
        "fidelity", parents=[common], help="coverage of the official example paths (blank frames, hole share, "
                                           "IoU and PSNR against the official renders)",
        description="Per path of official example folders: blank frames (>90%% holes before generation), mean hole "
                    "share, and for reconstruction-kind examples the hole-mask IoU and PSNR of the start point cloud's "
                    "renders against the official render.mp4 / render_mask.mp4.",
    )
    add_fidelity_arguments(fid)
    fid.set_defaults(func=fidelity_command)
    fq = esub.add_parser(
        "fill", parents=[common], help="hole fillers on the procedural scenes: PSNR and sharpness where nothing was known",
        description="Run warp along two orbits of the procedural scenes with each hole filler (telea; lama where its "
                    "weights are cached) and score the disoccluded pixels against the ground truth: PSNR and "
                    "sharpness (gradient magnitude relative to the truth's).",
    )
    add_fill_arguments(fq)
    fq.set_defaults(func=fill_command)
    ds = esub.add_parser(
        "dataset", parents=[common], help="a world's dataset against itself: colour and depth agreement of overlapping frames",
        description="Lift every frame's pixels with known depth (and mask 255) into every other frame that overlaps it: "
                    "the colour difference where the two depths agree and the share floating in front of the other "
                    "frame's surface, pooled within trajectories, across trajectories and against the input views.",
    )
    add_dataset_arguments(ds)
    ds.set_defaults(func=dataset_command)
