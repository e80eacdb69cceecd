"""Guided calibration for SO-100/SO-101 (Feetech) and Koch (Dynamixel) arms, validation of calibration
files, and recording/checking of the safety envelope. Entry point: `calibration.cli.main` (`pirl calibrate`).
"""
