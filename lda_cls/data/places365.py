"""Where an image of a Places-LT split file lives on disk: two layouts of Places-365.

The OLTR split files (Places_LT_{train,val,test}.txt) spell
``train/<category>[-<sub>]/<name>.jpg`` and ``val/<category>/Places365_val_<N>.jpg``.

* "listed": ``<root>/<path as listed>``, an image-folder copy of Places-365 in these names
  (e.g. places365standard_easyformat.tar, whose places365_standard/ has train/<category>/ and
  val/<category>/ folders).
* "release": the standard release, read by the official LDA code (lib/dataset/places.py):
  the training archive (data_256 or data_large) as ``<root>/train/<first letter>/<category>[/<sub>]/<name>.jpg``,
  the flat validation archive (val_256 or val_large) as ``<root>/val/Places365_val_<N>.jpg``.
* "auto": the one of the two under which the first listed image exists.
"""
import os
from typing import List, Tuple

__all__ = ["PLACES_LAYOUTS", "places365_release_path", "resolve_places_layout"]

PLACES_LAYOUTS = ("auto", "listed", "release")


def places365_release_path(listed: str) -> str:
    """The release-layout path (relative to the root) of a path as a split file lists it.

    >>> places365_release_path("train/apartment_building-outdoor/00000794.jpg")
    'train/a/apartment_building/outdoor/00000794.jpg'
    >>> places365_release_path("val/airfield/Places365_val_00003597.jpg")
    'val/Places365_val_00003597.jpg'
    """
    parts = listed.split("/")
    if len(parts) != 3 or parts[0] not in ("train", "val") or not parts[1]:
        raise ValueError(f"Places-LT path {listed!r}: expected train/<category>/<file> or val/<category>/<file>")
    top, category, name = parts
    if top == "val":
        return f"val/{name}"
    category = category.replace("-", "/")  # "bazaar-indoor" -> bazaar/indoor, as the release nests them
    return f"train/{category[0]}/{category}/{name}"


def resolve_places_layout(root: str, samples: List[Tuple[str, int]], layout: str, source: str) -> str:
    """``layout`` itself, or for "auto" the layout in which ``samples``' first image exists under ``root``."""
    if layout not in PLACES_LAYOUTS:
        raise ValueError(f"DATASET.PLACES_LAYOUT must be one of {PLACES_LAYOUTS}, got {layout!r}")
    if layout != "auto":
        return layout
    first = samples[0][0]
    candidates = {"listed": first, "release": places365_release_path(first)}
    for name, path in candidates.items():
        if os.path.isfile(os.path.join(root, path)):
            return name
    tried = "; ".join(f"{name}: {os.path.join(root, path)}" for name, path in candidates.items())
    raise FileNotFoundError(f"places_lt: the first image of {source} is in neither Places-365 layout under "
                            f"{root} ({tried}); see DATASET.PLACES_LAYOUT and the README")
