"""A plain FastAPI app, made a Lambda handler by Mangum; runs unchanged behind the http source."""

from typing import Annotated

from fastapi import FastAPI, Query, Response
from fastapi.responses import JSONResponse
from mangum import Mangum
from pydantic import BaseModel

app = FastAPI()
PIXEL = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + bytes(range(256))


class Item(BaseModel):
    name: str
    price: float


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None, tag: Annotated[list[str] | None, Query()] = None) -> dict:
    return {"item_id": item_id, "q": q, "tags": tag or []}


@app.post("/items", status_code=201)
def create_item(item: Item) -> JSONResponse:
    return JSONResponse({"created": item.model_dump()}, status_code=201, headers={"x-item": item.name})


@app.get("/files/pixel.png")
def download() -> Response:
    return Response(content=PIXEL, media_type="image/png")


handler = Mangum(app, lifespan="off")
