# SPDX-License-Identifier: MIT
"""The seed's stack as a benchmark peer: FastAPI + uvicorn, one JSON file per
dialog, one OpenAI-style Chat Completions call per turn.

This is the seed's design (the Python service this project replaces, the
public FastAPI project softkisik228/Call-Center-Agents at commit 63d2787: its
dialogue endpoints and its one-file-per-dialog storage) written as well as that
design allows, so that the comparison is honest:
  * one httpx.AsyncClient for the whole process, created at start-up, with no
    connection cap (the seed built five OpenAI clients and a graph per request);
  * one LLM call per turn (the seed made two to four);
  * the dialog file is read and written whole on every turn, pretty-printed
    with ensure_ascii=False, without fsync (as the seed: open("w") + json.dump);
  * reads return the file's bytes without parsing them.

Run: OPENAI_BASE_URL=http://127.0.0.1:N/v1 OPENAI_API_KEY=k STORAGE=dir \
     uvicorn --app-dir bench/peers fastapi_peer:app --port P --no-access-log
"""
import json
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Optional

import httpx
from fastapi import FastAPI, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, Field

STORAGE = os.environ.get("STORAGE", "storage/fastapi")
BASE_URL = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8001/v1").rstrip("/")
API_KEY = os.environ.get("OPENAI_API_KEY", "sk-test")
MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
SYSTEM_PROMPT = (
    "Ты — агент технической поддержки телеком-оператора. Отвечай кратко, "
    "по шагам, на языке клиента."
)

app = FastAPI()
client: Optional[httpx.AsyncClient] = None


class CustomerInfo(BaseModel):
    name: Optional[str] = Field(default=None, max_length=100)
    phone: Optional[str] = Field(default=None, max_length=20)
    email: Optional[str] = Field(default=None, max_length=100)
    customer_id: Optional[str] = Field(default=None, max_length=50)


class DialogCreate(BaseModel):
    customer_info: Optional[CustomerInfo] = None
    customer_id: Optional[str] = Field(default=None, max_length=50)
    initial_message: Optional[str] = Field(default=None, max_length=2000)
    source: str = "api"
    priority: str = "normal"


class MessageRequest(BaseModel):
    message: str = Field(min_length=1, max_length=2000)
    message_type: str = "user"


@app.on_event("startup")
async def startup() -> None:
    global client
    os.makedirs(STORAGE, exist_ok=True)
    client = httpx.AsyncClient(
        base_url=BASE_URL,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=httpx.Timeout(60.0, connect=5.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=4096),
    )


@app.on_event("shutdown")
async def shutdown() -> None:
    if client is not None:
        await client.aclose()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def path_of(dialog_id: str) -> str:
    try:
        canonical = str(uuid.UUID(dialog_id))
    except ValueError:
        raise HTTPException(status_code=404, detail="not found")
    return os.path.join(STORAGE, canonical + ".json")


def load(dialog_id: str) -> dict:
    try:
        with open(path_of(dialog_id), "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise HTTPException(status_code=404, detail="not found")


def save(doc: dict) -> None:
    with open(path_of(doc["dialog_id"]), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2)


async def llm_reply(text: str) -> str:
    body = {
        "model": MODEL,
        "temperature": 0.3,
        "max_tokens": 1000,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": text},
        ],
    }
    try:
        r = await client.post("/chat/completions", json=body)
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"]
    except (httpx.HTTPError, KeyError, IndexError, ValueError):
        return "Извините, произошла техническая ошибка. Попробуйте переформулировать запрос."


def message(doc: dict, sender: str, text: str, agent: Optional[str]) -> dict:
    m = {
        "id": str(uuid.uuid4()),
        "dialog_id": doc["dialog_id"],
        "sender": sender,
        "message": text,
        "agent_name": agent,
        "timestamp": now(),
        "metadata": {},
    }
    doc["messages"].append(m)
    return m


@app.post("/api/v1/dialogue/create")
async def create(req: DialogCreate):
    ts = now()
    info = req.customer_info or CustomerInfo(customer_id=req.customer_id)
    doc = {
        "dialog_id": str(uuid.uuid4()),
        "customer_info": info.model_dump() if hasattr(info, "model_dump") else info.dict(),
        "status": "active",
        "created_at": ts,
        "updated_at": ts,
        "messages": [],
        "current_agent": None,
        "conversation_summary": None,
        "metadata": {"source": req.source, "priority": req.priority},
    }
    if req.initial_message:
        message(doc, "user", req.initial_message, None)
        reply = await llm_reply(req.initial_message)
        message(doc, "agent", reply, "tech_support")
        doc["current_agent"] = "tech_support"
    save(doc)
    return doc


@app.post("/api/v1/dialogue/{dialog_id}/message")
async def post_message(dialog_id: str, req: MessageRequest):
    t0 = time.monotonic()
    doc = load(dialog_id)
    if doc["status"] not in ("active", "pending"):
        raise HTTPException(status_code=409, detail="dialog not active")
    user = message(doc, req.message_type, req.message, None)
    reply = await llm_reply(req.message)
    agent = message(doc, "agent", reply, "tech_support")
    doc["current_agent"] = "tech_support"
    doc["updated_at"] = agent["timestamp"]
    save(doc)
    return {
        "dialog_id": doc["dialog_id"],
        "message_id": user["id"],
        "agent_response": reply,
        "current_agent": "tech_support",
        "previous_agent": None,
        "handoff_reason": None,
        "user_intent": None,
        "timestamp": agent["timestamp"],
        "metadata": {},
        "processing_time": time.monotonic() - t0,
    }


@app.get("/api/v1/dialogue/{dialog_id}")
@app.get("/api/v1/dialogue/{dialog_id}/history")
async def get_dialog(dialog_id: str):
    try:
        with open(path_of(dialog_id), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise HTTPException(status_code=404, detail="not found")
    return Response(content=data, media_type="application/json")


@app.get("/health")
async def health():
    return {"status": "healthy"}
