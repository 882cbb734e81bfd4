"""A tiny MCP server over stdio for the conformance suite: two tools that note each call in a ledger.

The ledger is the file named by `DURABLE_LEDGER`, the same one the agent's process writes to, so a
test counts the MCP server's side effects (and its starts) beside the agent's.

Run with (the agent's `MCPToolset` starts it):
    DURABLE_LEDGER=/tmp/ledger.jsonl python -m tests.durable.mcp_server
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from tests.durable.ledger import note


def build_server() -> MCPServer:
    server = MCPServer("durable-conformance")

    @server.tool()
    def get_product_name() -> str:
        """The name of the product."""
        note("effect", "mcp get_product_name")
        return "Pydantic AI"

    @server.tool()
    def charge(amount: int) -> str:
        """Charge the card `amount` euros."""
        note("effect", f"mcp charge {amount}")
        return f"charged {amount} EUR"

    return server


def main() -> None:
    note("mcp", "start")
    build_server().run("stdio")


if __name__ == "__main__":
    main()
