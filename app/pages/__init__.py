"""Dashboard pages (registered with `dash.register_page` by `app.main.create_app`): overview, layer, unit, lab, findings."""
