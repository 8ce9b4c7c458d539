"""The article's streaming endpoint, written from its description, flaws included.

A plain FastAPI ``POST /chat`` that keeps every session as a growing list of
messages in a module-level dict (no bound, no persistence, no tenants, no run
ids, no resume) and streams the model's deltas as ``data: {...}`` lines with a
``StreamingResponse``. It is the baseline of ``benchmarks.bench_serve``.

Run: ``uvicorn benchmarks.peers.naive_serve:app`` with ``OPENAI_BASE_URL`` set.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI
from pydantic import BaseModel

app = FastAPI()
client = AsyncOpenAI()
sessions: dict[str, list[dict[str, str]]] = {}
MODEL = os.environ.get("AGENTMEM_MODEL", "gpt-4o-mini")


class ChatRequest(BaseModel):
    session_id: str
    message: str


@app.post("/chat")
async def chat(request: ChatRequest) -> StreamingResponse:
    messages = sessions.setdefault(request.session_id, [])
    messages.append({"role": "user", "content": request.message})

    async def generate() -> AsyncIterator[str]:
        stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)  # type: ignore[arg-type]
        answer = ""
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                delta = chunk.choices[0].delta.content
                answer += delta
                yield f"data: {json.dumps({'content': delta})}\n\n"
        messages.append({"role": "assistant", "content": answer})
        yield "data: [DONE]\n\n"

    return StreamingResponse(generate(), media_type="text/event-stream")
