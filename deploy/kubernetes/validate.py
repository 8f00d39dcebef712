#!/usr/bin/env python3
"""Validates rendered manifests (`kubectl kustomize … > FILE`) offline and strictly.

Every Kubernetes object is checked against the schemas kubernetes-validate ships (PyPI), for
KUBERNETES_VERSION (default 1.32), strictly: an unknown field is an error. CloudNativePG's
objects (Cluster, ScheduledBackup) are checked against their CRDs' schemas when a folder of
CRD files is given in CNPG_CRDS (no CRD ships with this repository); otherwise only their
apiVersion, kind and name are, and the script says so. cert-manager's objects (Issuer,
Certificate) likewise, with their CRDs in the same folder.

Usage: validate.py FILE...   Exit status 1 on the first invalid object.
"""
import glob
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

VERSION = os.environ.get("KUBERNETES_VERSION", "1.32")
CNPG_GROUP = "postgresql.cnpg.io/"
# cert-manager's objects: no schema offline, checked for kind and name like CNPG's without CRDs.
CERT_MANAGER_GROUP = "cert-manager.io/"


def crd_schemas(folder):
    """(apiVersion, kind) -> openAPIV3Schema, from every CRD file in folder."""
    schemas = {}
    for path in glob.glob(os.path.join(folder, "*.yaml")):
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for version in spec["versions"]:
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def strict(schema):
    """The CRD schema with additionalProperties false wherever properties are listed."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def main(paths):
    folder = os.environ.get("CNPG_CRDS")
    schemas = crd_schemas(folder) if folder else {}
    checked, unchecked = 0, []
    for path in paths:
        with open(path) as f:
            objects = [o for o in yaml.safe_load_all(f) if o]
        for obj in objects:
            name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
            api = obj.get("apiVersion", "")
            try:
                if api.startswith((CNPG_GROUP, CERT_MANAGER_GROUP)):
                    schema = schemas.get((api, obj.get("kind")))
                    if schema is None:
                        assert obj.get("metadata", {}).get("name"), "no name"
                        unchecked.append(name)
                        continue
                    jsonschema.validate(obj, strict(schema))
                else:
                    kubernetes_validate.validate(obj, VERSION, strict=True)
            except Exception as e:  # every kind of failure is a finding
                message = getattr(e, "message", str(e)).splitlines()[0]
                where = "/".join(str(p) for p in getattr(e, "absolute_path", []))
                print(f"{path}: {name} is invalid at {where or '.'}: {message}", file=sys.stderr)
                return 1
            checked += 1
    print(f"{checked} objects valid against the Kubernetes {VERSION} schemas"
          + (" and CloudNativePG's CRDs" if schemas else ""))
    if unchecked:
        print(f"not validated (no CRD schema offline; set CNPG_CRDS to a folder of CRD files): {', '.join(unchecked)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
