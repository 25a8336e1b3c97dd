"""The browser side: server-rendered pages (Jinja2), small plain JavaScript, no build step."""
