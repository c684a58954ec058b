"""Drives the iothub-emulator with Microsoft's own service SDK (azure-iot-hub), unmodified.

Usage: python test_sdk.py INFO_JSON   (the file the emulator wrote with --info-out)
The emulator's CA must be trusted, e.g. REQUESTS_CA_BUNDLE=<ca_cert_path>.
Prints one line per test and ends with "N passed, M failed"; exits non-zero on any failure.
"""

import base64
import json
import os
import sys
import traceback

from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import (
    AuthenticationMechanism,
    ExportImportDevice,
    QuerySpecification,
    SymmetricKey,
    Twin,
)
from msrest.exceptions import HttpOperationError

with open(sys.argv[1], encoding="utf-8") as info_file:
    INFO = json.load(info_file)
PORT = INFO["address"].rsplit(":", 1)[1]
SEEDED = int(os.environ.get("EMULATOR_DEVICES", "250"))


def parse(connection_string):
    return dict(part.split("=", 1) for part in connection_string.split(";") if part)


def local_connection_string(policy=None, key=None):
    """The emulator's connection string with HostName=localhost:PORT, which the machine
    resolves to loopback without touching /etc/hosts; the server certificate names localhost."""
    parts = parse(INFO["iothub_connection_string"])
    return "HostName=localhost:{};SharedAccessKeyName={};SharedAccessKey={}".format(
        PORT, policy or parts["SharedAccessKeyName"], key or parts["SharedAccessKey"]
    )


def key(n):
    return base64.b64encode(bytes([n]) * 32).decode()


REGISTRY = IoTHubRegistryManager.from_connection_string(local_connection_string())
RESULTS = []


def test(function):
    try:
        function()
        RESULTS.append((function.__name__, None))
        print("PASS", function.__name__, flush=True)
    except Exception:  # noqa: BLE001 - any failure is reported and counted
        RESULTS.append((function.__name__, traceback.format_exc()))
        print("FAIL", function.__name__, flush=True)
        traceback.print_exc()
    return function


def status_of(call):
    try:
        call()
    except HttpOperationError as error:
        return error.response.status_code
    raise AssertionError("the call succeeded")


@test
def create_devices_with_sas_keys():
    for i in range(3):
        device = REGISTRY.create_device_with_sas("sdk-device-%d" % i, key(i + 1), key(i + 101), "enabled")
        assert device.device_id == "sdk-device-%d" % i, device.device_id
        assert device.authentication.type == "sas"
        assert device.authentication.symmetric_key.primary_key == key(i + 1)
        assert device.etag


@test
def get_a_device():
    device = REGISTRY.get_device("sdk-device-1")
    assert device.device_id == "sdk-device-1"
    assert device.status == "enabled"
    assert device.authentication.symmetric_key.secondary_key == key(102)
    seeded = REGISTRY.get_device("device-000007")
    assert seeded.device_id == "device-000007"


@test
def update_a_device_with_its_etag():
    device = REGISTRY.get_device("sdk-device-2")
    updated = REGISTRY.update_device_with_sas("sdk-device-2", device.etag, key(7), key(8), "disabled")
    assert updated.status == "disabled"
    assert updated.etag != device.etag


@test
def update_twin_tags():
    twin = REGISTRY.get_twin("sdk-device-0")
    patch = Twin(tags={"building": "B42", "owner": "sdk-test"})
    updated = REGISTRY.update_twin("sdk-device-0", patch, twin.etag)
    assert updated.tags["building"] == "B42", updated.tags
    again = REGISTRY.get_twin("sdk-device-0")
    assert again.tags == {"building": "B42", "owner": "sdk-test"}, again.tags
    assert again.version == twin.version + 1


@test
def bulk_create_devices():
    devices = [
        ExportImportDevice(
            id="sdk-bulk-%02d" % i,
            import_mode="create",
            status="enabled",
            authentication=AuthenticationMechanism(
                type="sas", symmetric_key=SymmetricKey(primary_key=key(i + 1), secondary_key=key(i + 2))
            ),
        )
        for i in range(20)
    ]
    result = REGISTRY.bulk_create_or_update_devices(devices)
    assert result.is_successful, result.errors
    assert REGISTRY.get_device("sdk-bulk-19").authentication.symmetric_key.primary_key == key(20)


def query_all(query, page_size):
    ids, pages, token = [], 0, None
    while True:
        result = REGISTRY.query_iot_hub(QuerySpecification(query=query), token, page_size)
        assert result.type == "twin", result.type
        assert len(result.items) <= page_size
        pages += 1
        ids.extend(twin.device_id for twin in result.items)
        token = result.continuation_token
        if not token:
            return ids, pages


@test
def query_twins_over_several_pages():
    ids, pages = query_all("SELECT * FROM devices", 50)
    expected = SEEDED + 3 + 20
    assert len(ids) == expected, (len(ids), expected)
    assert len(set(ids)) == len(ids), "a device came back twice"
    assert pages >= expected // 50, pages
    assert "sdk-bulk-07" in ids and "device-000000" in ids


@test
def query_with_a_filter_and_count():
    ids, _ = query_all("SELECT * FROM devices WHERE tags.owner = 'sdk-test'", 10)
    assert ids == ["sdk-device-0"], ids
    # query_iot_hub deserializes every row as a Twin, which drops an aggregate's alias, so the
    # count is read from the raw answer of the same SDK operation.
    raw = REGISTRY.protocol.query.get_twins(
        QuerySpecification(query="SELECT COUNT() AS numberOfDevices FROM devices"), None, None, None, True
    )
    assert raw.response.json() == [{"numberOfDevices": SEEDED + 23}], raw.response.text


@test
def delete_a_device():
    REGISTRY.delete_device("sdk-device-1")
    assert status_of(lambda: REGISTRY.get_device("sdk-device-1")) == 404


@test
def a_wrong_key_fails_with_401():
    wrong = IoTHubRegistryManager.from_connection_string(local_connection_string(key=key(99)))
    assert status_of(lambda: wrong.get_device("sdk-device-0")) == 401
    assert status_of(lambda: wrong.query_iot_hub(QuerySpecification(query="SELECT * FROM devices"))) == 401


@test
def a_policy_without_registry_rights_fails_with_401():
    service = INFO.get("connection_strings", {}).get("service")
    assert service, "the info file lists the service policy"
    parts = parse(service)
    limited = IoTHubRegistryManager.from_connection_string(
        local_connection_string(parts["SharedAccessKeyName"], parts["SharedAccessKey"])
    )
    assert status_of(lambda: limited.get_twin("sdk-device-0")) == 401


passed = sum(1 for _, failure in RESULTS if failure is None)
failed = len(RESULTS) - passed
print("%d passed, %d failed" % (passed, failed), flush=True)
sys.exit(1 if failed else 0)
