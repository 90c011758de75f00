import base64
import io
import os

import boto3
from PIL import Image
from shared.sizes import fit_within

SIZE = int(os.environ.get("THUMBNAIL_SIZE", "128"))


def lambda_handler(event, context):
    """Make a thumbnail of the picture in the event (base64 PNG), or of a generated one."""
    if "image" in event:
        picture = Image.open(io.BytesIO(base64.b64decode(event["image"])))
    else:
        picture = Image.new("RGB", (event.get("width", 640), event.get("height", 480)), "teal")
    width, height = fit_within(picture.size, SIZE)
    thumbnail = picture.resize((width, height))
    out = io.BytesIO()
    thumbnail.save(out, format="PNG")
    return {
        "size": [width, height],
        "png_bytes": len(out.getvalue()),
        "pillow": Image.__version__,
        "sdk": boto3.__version__,
    }
