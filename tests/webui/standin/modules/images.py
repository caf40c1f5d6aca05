"""Stand-in for the parts of modules/images.py the extra-networks editor uses:
``read_info_from_image(image) -> (geninfo, items)`` (the PNG ``parameters`` text, other info) and
``save_image_with_geninfo(image, geninfo, filename, extension=None, existing_pnginfo=None, pnginfo_section_name='parameters')``.
Simplified: PNG text chunks only (no EXIF for jpeg/webp), no ``before_image_saved`` callbacks.
"""

import os


def read_info_from_image(image):
    items = dict(getattr(image, "info", None) or {})
    geninfo = items.pop("parameters", None)
    return geninfo, items


def save_image_with_geninfo(image, geninfo, filename, extension=None, existing_pnginfo=None, pnginfo_section_name='parameters'):
    from PIL import PngImagePlugin

    if extension is None:
        extension = os.path.splitext(filename)[1]
    if extension.lower() == '.png':
        info = PngImagePlugin.PngInfo()
        for k, v in (existing_pnginfo or {}).items():
            info.add_text(k, str(v))
        if geninfo is not None:
            info.add_text(pnginfo_section_name, geninfo)
        image.save(filename, format="PNG", pnginfo=info)
    else:
        image.save(filename)
