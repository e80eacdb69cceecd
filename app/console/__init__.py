"""The operator console: a Textual TUI that observes the actor and sends it commands.

It owns no robot logic. It talks to the actor only through `app.control` (status in, commands out),
so freezing or killing the console never touches the robot: the actor keeps it safe on its own.
"""
