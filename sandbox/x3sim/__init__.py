"""Sage X3 simulator: a real HTTP server speaking both transports of the X3 API contract.

Run it with ``python -m sandbox.x3sim --port 8124`` or start it in-process with
``make_server("127.0.0.1", 0)``. It keeps everything in memory (``X3State``); api1 and GraphQL
serve the same suppliers, accounts, dimensions and invoices.

Modules, following one request through:
    server.py         HTTP: routes a request to one of the endpoints below; make_server, main
    api1.py           REST api1: Basic auth, $query (where.py: SData filters), $details, $create
    graphql.py        POST /xtrem/api: runs a query (gqlparse.py parses it) or a create;
    graphql_input.py  a create's input type-checked and mapped to the api1 body
    rules.py          what a supplier or invoice create must pass, for both transports
    state.py          the data in memory, the seed, the counters (X3State)
    faults.py         injected latency, errors, slow and dropped commits, request counters
    oauth.py          OAuth2 tokens, connected-app JWTs, the consent page, regional endpoints

REST api1 (HTTP Basic), base ``/api1/x3/erp/{FOLDER}`` (see api1.py):
    GET  /{CLASS}?representation={CLASS}.$query&where=...&count=N&startIndex=I&orderBy=F desc
    GET  /{CLASS}('KEY')?representation={CLASS}.$details
    POST /{CLASS}?representation={CLASS}.$create        (BPSUPPLIER and the invoice class)
    classes: BPSUPPLIER, GACCOUNT, CACCE and the invoice class (default BPSINVOICE).
    What a create must pass is in rules.py, for both transports.

Test controls (no auth, never faulted):
    GET  /_sim/health                   {"ok": true}
    GET  /_sim/state                    suppliers, invoices, accounts, dimensions, stats, faults
    GET  /_sim/faults, POST /_sim/faults  any subset of FAULT_DEFAULTS plus
                                        "next_errors": [503, 500, 429] (one per next request)
                                        and "drop_next_commits": N; slow commits:
                                        "slow_commit_rate" + "slow_commit_ms" (a share of
                                        creates commits only after that many ms, whatever the
                                        client did meanwhile) or "slow_next_commits": N
    POST /_sim/reset                    back to the seed, no faults, zeroed stats
    POST /_sim/seed                     replace all data with the posted seed (reset keeps the
                                        original seed)

Supplier numbering (``--supplier-numbering``, ``make_server(supplier_numbering=...)``): manual
(default) refuses a supplier without BPSNUM / code; sequence gives it the next SUP000001, ...
on both transports, as an X3 that numbers suppliers itself does.

Seed (the --seed file, or ``make_server(seed=...)``; every key optional)::

    {"suppliers": [{"BPSNUM": "ACME01", "BPSNAM": "...", "CRN": "...", "EECNUM": "",
                    "CUR": "USD", "BPAADD": "A01", "BPADDRESS": [{...}]}],
     "accounts": [{"COA": "CONS", "ACC": "6100", "DES": "...", "ENAFLG": true}],
     "dimensions": [{"DIE": "CCT", "CCE": "PLANT1", "DES": "...", "ENAFLG": true}],
     "invoices": [{"NUM": "SIV000001", "BPR": "ACME01", ...}]}

GraphQL (OAuth2 bearer, see sandbox/x3sim/graphql.py for what it understands):
    POST /xtrem/api  {"query", "variables"}, headers Authorization: Bearer <token> and
                     x-xtrem-endpoint: {FOLDER} (400 when missing or another folder).
                     401 for a missing, unknown or expired token. A bearer is either an access
                     token from /oauth/token or a connected-app JWT (HS256 signed with the client
                     secret, iss = client id, sub, aud, iat not in the future, exp <= iat + 300).
    POST /oauth/token  {"grant_type": "refresh_token", "refresh_token", "client_id",
                     "client_secret"} -> {"access_token", "refresh_token", "expires_in"};
                     400 invalid_grant for an unknown or already used refresh token, 401
                     invalid_client. The OAuth client is seeded by make_server/main
                     (--client-id demo --client-secret demo-secret --refresh-token initial-rt).
                     Never faulted, so fault tests exercise the API, not the login.
    POST /oauth/token  {"grant_type": "authorization_code", "code", "redirect_uri",
                     "client_id", "client_secret"}: exchanges a one-time code from the consent
                     page (400 invalid_grant when unknown, used, expired or of another region).
    GET  /oauth/authorize?client_id&redirect_uri&state&scope&customer  the consent page: the
                     "user" accepts at once and the simulator calls the redirect_uri back with
                     authorizationCode, state and endpoint (the regional API, {base}/eu), as Sage
                     does. Test knobs in the same query: sim_callback=post (default: a form POST
                     from the simulator), json (a JSON POST) or redirect (302, the browser GETs
                     redirect_uri?...); sim_consent=deny (callback with error=access_denied);
                     sim_region=<name> (default eu; empty: no endpoint, the home region).
    /eu/xtrem/api, /eu/oauth/token  the regional endpoint: tokens issued by a region's token
                     endpoint work on that region's API only (401 elsewhere), and so do codes.
                     /_sim/state reports stats.regional_calls per path.
    GET  /_sim/tokens  refresh and access tokens valid now (tests look for leaks of them).
    POST /_sim/authorize  a new refresh token, as a person re-authorising would get one.
    Faults apply to GraphQL as to api1: latency; 500 is HTTP 500; 429 is HTTP 429 with
    Retry-After (a gateway's answer); 503 and the max_concurrency refusal are HTTP 200 with
    errors[].extensions.code SERVICE_UNAVAILABLE (what the xtrem server itself answers);
    drop_after_commit hangs up after a mutation committed. Token faults: token_lifetime
    (seconds an access token lives, default 300) and rotate_refresh_tokens (default true: a
    used refresh token is refused afterwards). /_sim/state reports stats.token_refreshes.
"""


from sandbox.x3sim.api1 import ApiError, ResourceClass, resource_classes
from sandbox.x3sim.faults import FAULT_DEFAULTS, RequestTicket
from sandbox.x3sim.rules import ValidationFailed
from sandbox.x3sim.server import X3Handler, X3Server, main, make_server
from sandbox.x3sim.state import X3State, default_seed, normalise_seed

__all__ = [
    "FAULT_DEFAULTS",
    "ApiError",
    "RequestTicket",
    "ResourceClass",
    "ValidationFailed",
    "X3Handler",
    "X3Server",
    "X3State",
    "default_seed",
    "main",
    "make_server",
    "normalise_seed",
    "resource_classes",
]
