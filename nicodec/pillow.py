"""A Pillow plugin for ``.nic`` files, registered by ``import nicodec``.

    >>> import nicodec
    >>> from PIL import Image
    >>> Image.open("photo.nic").save("photo.png")
    >>> Image.open("photo.png").save("photo.nic", quality=2, domain="photo")

Opening reads and checks the file (size, mode, CRC); pixels are decoded on first access.
"""

from __future__ import annotations

from PIL import Image, ImageFile

from nicodec import container

FORMAT = "NIC"


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == container.MAGIC


class NicImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "nicodec neural image"

    def _open(self) -> None:
        self._data = self.fp.read()
        try:
            header, _ = container.parse(self._data)  # every check, the CRC included
        except container.NicodecError as e:
            raise SyntaxError(str(e)) from None
        self._size = (header.width, header.height)
        self._mode = "L" if header.channels == 1 else "RGB"
        self.info["quality"] = header.quality
        self.tile = []

    def load(self):
        if self._data is not None:
            from nicodec.api import decompress

            pixels = decompress(self._data)
            self.im = Image.fromarray(pixels, self.mode).im
            self._data = None
        return Image.Image.load(self)


def _save(im: Image.Image, fp, filename) -> None:
    from nicodec.api import compress

    opts = im.encoderinfo
    fp.write(compress(im, quality=int(opts.get("quality", 3)),
                      domain=opts.get("domain", "photo"), device=opts.get("device", "auto")))


def register() -> None:
    Image.register_open(FORMAT, NicImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".nic")
    Image.register_mime(FORMAT, "image/x-nicodec")
