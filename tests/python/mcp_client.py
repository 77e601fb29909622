"""Drive traffic-guardian-mcp with the official MCP Python SDK.

Usage: mcp_client.py PLAN.json

PLAN.json holds {"server": <path>, "env": {...}, "calls": [[tool, args], ...]}.
The script starts the server as a stdio child process and runs two sessions:

- "handshake": initialize (the newest revision with a handshake), tools/list,
  then every call in the plan, in order;
- "discover": server/discover (the newest revision, without a handshake),
  tools/list, then the first call again.

It prints one JSON object on stdout: the negotiated versions, server info,
the tools, and every call's result as the SDK parsed it. Errors the SDK
raises are reported as {"exception": "..."} so the caller can assert on them.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def call(session, tool, args):
    try:
        result = await session.call_tool(tool, args)
        return {"tool": tool, "args": args, "result": dump(result)}
    except Exception as exc:  # reported, not raised: the caller asserts on it
        return {"tool": tool, "args": args, "exception": f"{type(exc).__name__}: {exc}"}


async def handshake_session(params, calls):
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            results = [await call(session, tool, args) for tool, args in calls]
            return {
                "protocolVersion": init.protocol_version,
                "serverInfo": dump(init.server_info),
                "instructions": init.instructions,
                "tools": dump(tools)["tools"],
                "calls": results,
            }


async def discover_session(params, calls):
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            discovered = await session.discover()
            tools = await session.list_tools()
            results = [await call(session, tool, args) for tool, args in calls[:1]]
            return {
                "protocolVersion": session.protocol_version,
                "supportedVersions": list(discovered.supported_versions),
                "tools": dump(tools)["tools"],
                "calls": results,
            }


async def main(plan_path):
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    params = StdioServerParameters(command=plan["server"], args=[], env=plan["env"])
    calls = [(tool, args) for tool, args in plan["calls"]]
    out = {"handshake": await handshake_session(params, calls)}
    try:
        out["discover"] = await discover_session(params, calls)
    except Exception as exc:
        out["discover"] = {"exception": f"{type(exc).__name__}: {exc}"}
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
