"""The synthetic hand-object world: grasp synthesis, an Open3D ray-cast renderer, and the dataset writer.

`world.World` turns (seed, index) into one record (grasp from `grasp`, forces from `forces`, image from `render`);
`writer.write_dataset` stores records as shards (`shards`); `amt_core.data.synthetic` reads them, or renders live.
Submodules import heavy packages (open3d, torch); import them directly.
"""
