"""The web kit: what a payg web app is made of, shared by the controller's pages (payg/web) and the hub's
(payg/hub), and importing neither. `app.make_app` is the frame (sessions, CSRF, Socket.IO, the guard, the
security headers, the error pages, the browser libraries), `pages` the login and logout, `live` the landlord's
live connections, and `server` the HTTP server both run on. Modules are imported by their own names."""
