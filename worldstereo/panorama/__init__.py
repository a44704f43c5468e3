"""Panoramas: the equirectangular convention, the official 27-view pano bank, depth at one scale, and
synthetic panoramas with ground truth. File reading and writing of banks is :mod:`.files`."""
