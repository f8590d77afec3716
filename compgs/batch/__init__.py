"""Batch compression of scene collections: resumable, one process per scene, local or Ray.

`run_batch` trains (and so compresses and evaluates) every scene of a list
into one output folder; `prepare_arkit` turns a raw ARKitScenes video into a
scene folder; `arkit200` and `dl3dv140` define the paper's two collections.
"""
