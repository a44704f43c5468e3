"""``worldstereo download-weights``: fill the Hugging Face cache with the weights the defaults use (offline machines)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_download_parser", "download_weights_command"]


def add_download_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``download-weights`` subcommand."""
    dw = sub.add_parser(
        "download-weights", parents=[common], help="fetch the model weights the defaults need into the Hugging Face cache",
        description="Download the weights the defaults use into the Hugging Face cache (HF_HOME), for offline machines "
                    "and a Space's build step: MoGe-2 (the small vits variant for a CPU, vitl for CUDA) and LaMa (hole filling). "
                    "HF_ENDPOINT and HF_TOKEN are honoured; files already cached are not downloaded again.",
    )
    dw.add_argument("--device", choices=("auto", "cpu", "cuda", "all"), default="auto",
                    help="which default variants: this machine's (auto), a CPU's, a GPU's, or all")
    dw.add_argument("--depth-model", metavar="REPO", action="append", default=[],
                    help="a MoGe-2 repo id to fetch as well (repeatable)")
    dw.add_argument("--no-fill", action="store_true", help="skip the LaMa hole-filling weights")
    dw.add_argument("--generator", choices=("vace",), action="append", default=[],
                    help="also fetch a learned generator's weights (vace: Wan2.1-VACE-1.3B, about 20 GB on disk)")
    dw.add_argument("--quiet", action="store_true", help="no progress bar")
    dw.set_defaults(func=download_weights_command)


def download_weights_command(args: argparse.Namespace) -> int:
    from worldstereo.backends.depth_moge import MOGE_DEFAULT_REPOS, default_device, resolve_moge_weights

    if args.device == "all":
        repos = list(dict.fromkeys(MOGE_DEFAULT_REPOS.values()))
    else:
        device = default_device() if args.device == "auto" else args.device
        repos = [MOGE_DEFAULT_REPOS[device]]
    repos += [r for r in args.depth_model if r not in repos]
    for repo in repos:
        path = resolve_moge_weights(repo, show_progress=not args.quiet)
        print(f"MoGe-2 {repo}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if not args.no_fill:
        from worldstereo import hub
        from worldstereo.backends.fill import lama_source

        source = lama_source()
        if isinstance(source, Path):
            print(f"LaMa: local file {source.name} (WORLDSTEREO_LAMA), nothing to download")
        else:
            path = hub.fetch_file(*source, show_progress=not args.quiet)
            print(f"LaMa {'/'.join(source)}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if "vace" in args.generator:
        from worldstereo.backends.vace import download_vace_weights, vace_source

        repo = vace_source()
        if Path(repo).is_dir():
            print(f"Wan2.1-VACE: local folder {Path(repo).name} (WORLDSTEREO_VACE_MODEL), nothing to download")
        else:
            print(f"Wan2.1-VACE {repo}: {download_vace_weights(repo)}")
    return 0
