"""The Run tab: :class:`app.ui.run.view.RunView` and its panels (picker, load, chat, memory, problem)."""
