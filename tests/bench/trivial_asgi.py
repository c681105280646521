"""The second reference: the same trivial function on functions-framework's ASGI path (`--asgi`), async as
the framework wants it there (a sync function runs on a thread pool and serves ~8x fewer requests)."""

import functions_framework.aio
from starlette.responses import JSONResponse


@functions_framework.aio.http
async def trivial(request):  # type: ignore[no-untyped-def]
    await request.body()
    return JSONResponse({"ok": True})
