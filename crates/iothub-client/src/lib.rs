//! Azure IoT Hub service client (being built).
