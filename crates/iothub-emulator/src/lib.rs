//! Azure IoT Hub emulator (being built).
