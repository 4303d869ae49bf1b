"""The Hardware tab: :class:`app.ui.hardware.view.HardwareView`, its GPU cards and the planned-rig editor."""
