"""The pages people use: kiosk, counter console, booking site, ticket follower, manager
pages. Jinja templates and small ES modules (no build step), translated through gettext
catalogs (``locale/``), all data through the JSON API and the live feeds."""
