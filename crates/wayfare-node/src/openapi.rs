//! The OpenAPI 3.0 document served at `/openapi.json` (checked to parse and to list every
//! route by a unit test).

/// The document.
pub const DOCUMENT: &str = r##"{
  "openapi": "3.0.3",
  "info": {"title": "Wayfare node API", "version": "1", "description": "Local API of the wayfare daemon. Every path except /openapi.json needs `Authorization: Bearer <token>` (the token is in DATA_DIR/api-token, mode 0600). Amounts are decimal strings of wei."},
  "servers": [{"url": "http://127.0.0.1:7767"}],
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "schemas": {
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
      "Session": {"type": "object", "properties": {
        "id": {"type": "string"}, "role": {"type": "string", "enum": ["seller", "buyer"]},
        "counterparty": {"type": "string"}, "service": {"type": "string"}, "phase": {"type": "string"},
        "channel_id": {"type": "string", "nullable": true}, "bytes": {"type": "integer"},
        "seconds": {"type": "integer"}, "owed_wei": {"type": "string"}, "paid_wei": {"type": "string"},
        "deposit_wei": {"type": "string", "nullable": true}, "deposit_left_wei": {"type": "string", "nullable": true},
        "price_per_mib_wei": {"type": "string", "nullable": true}, "price_per_second_wei": {"type": "string", "nullable": true},
        "live": {"type": "boolean"}, "socks": {"type": "string", "nullable": true},
        "end_reason": {"type": "string", "nullable": true}, "last_error": {"type": "string", "nullable": true},
        "measured": {"type": "object", "nullable": true, "properties": {
          "first_byte_ms": {"type": "integer", "nullable": true}, "peak_down_bps": {"type": "integer"},
          "answered": {"type": "integer"}, "lost": {"type": "integer"}}}}},
      "Offer": {"type": "object", "properties": {
        "seller": {"type": "string"}, "peer_id": {"type": "string"}, "region": {"type": "string"},
        "services": {"type": "array", "items": {"type": "string"}},
        "price_per_mib_wei": {"type": "string"}, "price_per_second_wei": {"type": "string"},
        "seller_burn_wei": {"type": "string"}, "buyer_burn_wei": {"type": "string"},
        "min_deposit_wei": {"type": "string"}, "payment_interval": {"type": "integer"},
        "capacity_bps": {"type": "integer"}, "score": {"type": "number", "nullable": true},
        "failed_recently": {"type": "boolean"},
        "valid_until": {"type": "integer"}}},
      "Channel": {"type": "object", "properties": {
        "id": {"type": "string"}, "role": {"type": "string"}, "seller": {"type": "string"}, "buyer": {"type": "string"},
        "service": {"type": "string"}, "state": {"type": "string", "enum": ["open", "closing", "closed"]},
        "deposit_wei": {"type": "string"}, "voucher_wei": {"type": "string"}, "vouchers": {"type": "integer"},
        "to_seller_wei": {"type": "string", "nullable": true}, "to_buyer_wei": {"type": "string", "nullable": true},
        "closes_at": {"type": "integer", "nullable": true},
        "pending_actions": {"type": "array", "items": {"type": "string"}}}},
      "ConnectRequest": {"type": "object", "properties": {
        "seller": {"type": "string"}, "service": {"type": "string", "enum": ["wireguard", "shadowsocks"]},
        "max_price_per_mib": {"type": "string"}, "max_price_per_second": {"type": "string"}, "deposit": {"type": "string"},
        "region": {"type": "string"}, "min_score": {"type": "number"}, "switch": {"type": "boolean", "description": "move from the live session to another seller, new tunnel up before the old goes"}}},
      "Tx": {"type": "object", "properties": {"tx": {"type": "string"}, "amount_wei": {"type": "string", "nullable": true}}}
    },
    "responses": {
      "Error": {"description": "What went wrong and what to do", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    }
  },
  "security": [{"bearer": []}],
  "paths": {
    "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3 document"}}}},
    "/metrics": {"get": {"summary": "Prometheus counters", "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": {"$ref": "#/components/responses/Error"}}}},
    "/v1/status": {"get": {"summary": "Node, chain and sessions", "responses": {"200": {"description": "status", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": {"$ref": "#/components/responses/Error"}}}},
    "/v1/offers": {"get": {"summary": "Live offers with their seller's score, best utility first", "parameters": [{"name": "sort", "in": "query", "required": false, "schema": {"type": "string", "enum": ["utility", "score", "price"]}}], "responses": {"200": {"description": "offers", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Offer"}}}}}, "401": {"$ref": "#/components/responses/Error"}}}},
    "/v1/connect": {"post": {"summary": "Negotiate, open a channel, connect and pay (buyer)", "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ConnectRequest"}}}}, "responses": {"200": {"description": "session started; poll /v1/sessions/{id}", "content": {"application/json": {"schema": {"type": "object", "properties": {"session": {"type": "string"}, "seller": {"type": "string"}}}}}}, "400": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}},
    "/v1/disconnect": {"post": {"summary": "Leave one or every buyer session (pays, closes the channel cooperatively)", "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {"session": {"type": "string"}}}}}}, "responses": {"200": {"description": "sessions left", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "string"}}}}}, "400": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/v1/lockdown": {"post": {"summary": "Put the buyer's lockdown (kill switch) up or lift it", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["on"], "properties": {"on": {"type": "boolean"}}}}}}, "responses": {"200": {"description": "the lockdown now (also `lockdown` in /v1/status)", "content": {"application/json": {"schema": {"type": "object"}}}}, "400": {"$ref": "#/components/responses/Error"}}}},
    "/v1/dashboard/link": {"post": {"summary": "A one-time link to the web dashboard (works once, for 5 minutes)", "responses": {"200": {"description": "the link", "content": {"application/json": {"schema": {"type": "object", "properties": {"url": {"type": "string"}, "expires_in": {"type": "integer"}}}}}}}}},
    "/v1/login": {"post": {"summary": "Trade a dashboard link's code for the API token", "security": [], "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["code"], "properties": {"code": {"type": "string"}}}}}}, "responses": {"200": {"description": "the token", "content": {"application/json": {"schema": {"type": "object", "properties": {"token": {"type": "string"}}}}}}, "401": {"$ref": "#/components/responses/Error"}}}},
    "/": {"get": {"summary": "The web dashboard (HTML; its assets are under /ui/)", "security": [], "responses": {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    "/v1/sessions": {"get": {"summary": "Every session", "responses": {"200": {"description": "sessions", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}}}}}}}},
    "/v1/sessions/{id}": {"get": {"summary": "One session", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "responses": {"200": {"description": "session", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Session"}}}}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/v1/channels": {"get": {"summary": "Every channel this node is party to", "responses": {"200": {"description": "channels", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Channel"}}}}}}}},
    "/v1/channels/{id}/close": {"post": {"summary": "Close a channel (buyer: leave or start a close; seller: settle)", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "responses": {"200": {"description": "what happens next", "content": {"application/json": {"schema": {"type": "string"}}}}, "400": {"$ref": "#/components/responses/Error"}}}},
    "/v1/seller": {"get": {"summary": "Seller sessions and earnings", "responses": {"200": {"description": "seller status", "content": {"application/json": {"schema": {"type": "object"}}}}, "409": {"$ref": "#/components/responses/Error"}}}},
    "/v1/withdraw": {"post": {"summary": "Withdraw what closes credited to this node's account", "responses": {"200": {"description": "transaction", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Tx"}}}}, "400": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}}
  }
}"##;

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_parses_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/status",
            "/v1/offers",
            "/v1/connect",
            "/v1/disconnect",
            "/v1/lockdown",
            "/v1/dashboard/link",
            "/v1/login",
            "/",
            "/v1/sessions",
            "/v1/sessions/{id}",
            "/v1/channels",
            "/v1/channels/{id}/close",
            "/v1/seller",
            "/v1/withdraw",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(
                paths.contains_key(p),
                "{p} missing from the OpenAPI document"
            );
        }
    }
}
