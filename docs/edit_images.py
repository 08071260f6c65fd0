"""Make the README's edit-round and restyle-sheet images on the sandbox (marked SANDBOX on every tile).

    python docs/edit_images.py      # writes docs/images/edit-round.png and docs/images/restyle-sheet.png
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BRIEF = HERE.parent / "src/portrait_studio/presets/briefs/rembrandt-studio-headshot.yaml"


def portrait(*args: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "portrait_studio", *args, "--json"], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def main() -> None:
    from portrait_studio.grids import Tile, side_by_side

    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PORTRAIT_STUDIO_HOME": home}
        for var in ("BFL_API_KEY", "FAL_KEY", "REPLICATE_API_TOKEN"):
            env.pop(var, None)
        shot = portrait("shoot", str(BRIEF), "-m", "flux-2-pro", "--seed", "11", env=env)
        original = shot["images"][0]["out_path"]
        instruction = "make the light warmer and soften the fill"
        edit = portrait("edit", original, instruction, "-m", "flux-2-pro", "--seed", "3", env=env)["results"][0]
        side_by_side([
            Tile(path=original, lines=("before · flux-2-pro · seed 11",), badge="SANDBOX"),
            Tile(path=edit["path"], lines=(f"after: “{instruction}”",
                                           f"identity {edit['distance']} ({edit['identity']}) · check {edit['check']}"),
                 status=edit["check"], badge="SANDBOX"),
        ], HERE / "images" / "edit-round.png", tile_height=420, title="portrait edit · one round (sandbox)")
        restyle = portrait("restyle", original, "--look", "editorial", "--look", "cinematic", "--look",
                           "black-and-white", "--look", "film", "-m", "flux-2-pro", "--seed", "5", env=env)
        shutil.copyfile(restyle["sheet"], HERE / "images" / "restyle-sheet.png")


if __name__ == "__main__":
    main()
