"""The one error type calibration raises: its message always says what is wrong and what to do."""


class CalibrationError(RuntimeError):
    """A calibration step failed or a calibration file cannot be trusted (message = cause + remedy)."""
