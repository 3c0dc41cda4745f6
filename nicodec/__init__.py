"""nicodec: a neural image codec that adapts to your images without forgetting.

    import nicodec
    data = nicodec.compress(pixels, quality=3)     # uint8 numpy array or PIL image -> bytes
    pixels = nicodec.decompress(data)             # -> uint8 numpy array
    nicodec.info(data)                            # header and the models it needs

:class:`Encoder` / :class:`Decoder` keep models loaded for many images. Importing nicodec
registers a Pillow plugin: ``Image.open("x.nic")`` and ``img.save("x.nic", quality=2)``.
"""

from nicodec.api import Decoder, Encoder, compress, decompress, info
from nicodec.errors import NicodecError
from nicodec.pillow import register as _register_pillow

__all__ = ["compress", "decompress", "info", "Encoder", "Decoder", "NicodecError"]

_register_pillow()
