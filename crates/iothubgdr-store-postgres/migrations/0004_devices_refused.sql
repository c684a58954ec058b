-- Twins an import did not copy because they break IoT Hub's own limits (device id over 128
-- characters or outside its character set, tags over 8 KB, …).
ALTER TABLE imports ADD COLUMN number_devices_refused BIGINT NOT NULL DEFAULT 0;
