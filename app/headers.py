"""The security headers of the service's answers (app.security adds them to every answer; the
outermost error handler, which answers outside that middleware, adds them itself)."""

from __future__ import annotations

# Sent with every answer; the content security policy is added per answer (its nonce).
FIXED_SECURITY_HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff",
                          "referrer-policy": "same-origin"}
# What an error answer that bypassed the middleware carries: JSON, so its policy allows nothing.
ERROR_ANSWER_HEADERS = {**FIXED_SECURITY_HEADERS,
                        "content-security-policy": "default-src 'none'; frame-ancestors 'none'"}
