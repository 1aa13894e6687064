"""Every served resource: group/version/kind, plural, scope, short names, verbs, subresources, schema,
and the per-kind strategy (defaults, validation, table columns), as upstream 1.32 serves them."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

from . import apiservices, configdata, cronjobs, endpoints, replicationcontrollers, gatekeeper, jobs, kinds, kyverno, meta, pod, runtimeclass, schema, services, workloads
from .errors import FieldError

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

Validate = Callable[[dict], list[FieldError]]
ValidateUpdate = Callable[[dict, dict], list[FieldError]]


def _col(name: str, desc: str = "", fmt: str = "", priority: int = 0, typ: str = "string") -> dict:
    return {"name": name, "type": typ, "format": fmt, "description": desc, "priority": priority}


NAME_COL = _col("Name", "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names", "name")
AGE_COL = _col("Age", "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")
DEFAULT_COLUMNS = [NAME_COL, _col("Created At", AGE_COL["description"], "", 0, "date")]


@dataclass
class Kind:
    """Per-kind behaviour shared by every served version of the kind."""
    kind: str
    validate: Validate
    validate_update: ValidateUpdate | None = None
    defaults: Callable[[dict], None] | None = None      # at decode time, before admission
    prepare_create: Callable[[dict], None] | None = None  # after admission (PrepareForCreate)
    prepare_update: Callable[[dict, dict], None] | None = None
    warnings: Callable[[dict], list[str]] | None = None
    columns: list[dict] = field(default_factory=lambda: DEFAULT_COLUMNS)
    row: Callable[[dict], list] = kinds.default_row
    has_status: bool = False
    generation: bool = False
    unconditional_update: bool = True
    create_on_update: bool = False
    name_fn: Callable = None  # type: ignore[assignment]
    # subresources that update a part of the object: name -> (prepare(new, old) -> object to store, validate(new, old))
    subresource_updates: dict[str, tuple[Callable[[dict, dict], dict], ValidateUpdate]] = field(default_factory=dict)

    def check_update(self, new: dict, old: dict, subresource: str | None = None) -> list[FieldError]:
        if subresource in self.subresource_updates:
            return self.subresource_updates[subresource][1](new, old)
        if self.validate_update:
            return self.validate_update(new, old)
        return self.validate(new) + meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))


@dataclass
class Resource:
    group: str
    version: str
    plural: str
    singular: str
    namespaced: bool
    kind: Kind
    definition: str
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    verbs: list[str] = field(default_factory=lambda: list(ALL_VERBS))
    subresources: list[str] = field(default_factory=list)
    storage_version: str = ""
    to_storage: Callable[[dict, str], dict] | None = None
    from_storage: Callable[[dict, str], dict] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def builtin(self) -> bool:
        """One of Kubernetes' own kinds (not a custom resource such as a Kyverno or Gatekeeper kind)."""
        return self.definition.startswith("io.k8s.")

    @property
    def storage_api_version(self) -> str:
        v = self.storage_version or self.version
        return f"{self.group}/{v}" if self.group else v

    @property
    def qualified(self) -> str:
        """Resource name in messages: `runtimeclasses.node.k8s.io`, `pods`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @functools.cached_property
    def _key_base(self) -> str:
        return f"/registry/{self.plural if not self.group or self.group in _PLAIN_GROUPS else self.plural + '.' + self.group}/"

    def key_prefix(self, namespace: str | None) -> str:
        base = self._key_base
        if self.namespaced and namespace:
            return base + namespace + "/"
        return base

    def key(self, namespace: str | None, name: str) -> str:
        return self.key_prefix(namespace) + name

    def encode_out(self, obj: dict) -> dict:
        """Storage object -> this version."""
        if self.from_storage:
            return self.from_storage(obj, self.version)
        return obj

    def decode_in(self, obj: dict) -> dict:
        """This version -> storage object."""
        if self.to_storage:
            return self.to_storage(obj, self.version)
        return obj


_PLAIN_GROUPS = {"node.k8s.io", "apps", "rbac.authorization.k8s.io", "coordination.k8s.io", "scheduling.k8s.io", "discovery.k8s.io"}

# ---- kinds

RUNTIMECLASS = Kind("RuntimeClass", runtimeclass.validate, runtimeclass.validate_update, warnings=runtimeclass.warnings,
                    columns=[NAME_COL, _col("Handler", "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."), AGE_COL],
                    row=runtimeclass.table_row, unconditional_update=False, create_on_update=True)
POD = Kind("Pod", pod.validate, pod.validate_update, defaults=pod.set_defaults, prepare_create=pod.prepare_create, prepare_update=pod.prepare_update,
           subresource_updates={"ephemeralcontainers": (pod.prepare_ephemeral_update, pod.validate_ephemeral_update)},
           columns=[NAME_COL, _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
                    _col("Status", "The aggregate status of the containers in this pod."),
                    _col("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
                    AGE_COL, _col("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", priority=1),
                    _col("Node", "Name of the Node this pod is assigned to.", priority=1),
                    _col("Nominated Node", "Name of the node this pod is nominated to run on.", priority=1),
                    _col("Readiness Gates", "The readiness gates of this pod.", priority=1)],
           row=pod.table_row, has_status=True)
SERVICE = Kind("Service", services.validate, services.validate_update, defaults=services.defaults,
               prepare_create=services.prepare_create, prepare_update=services.prepare_update,
               columns=[NAME_COL, _col("Type", "The type of the service."), _col("Cluster-IP", "The IP address of the service."),
                        _col("External-IP", "The external IP address of the service."), _col("Port(s)", "The ports of the service."),
                        AGE_COL, _col("Selector", "The selector of the service.", priority=1)],
               row=services.table_row, has_status=True,
               subresource_updates={"status": (services.prepare_status_update, services.validate_status_update)})
ENDPOINTS = Kind("Endpoints", endpoints.endpoints_validate,
                 columns=[NAME_COL, _col("Endpoints", "Endpoints of the service"), AGE_COL], row=endpoints.endpoints_row)
ENDPOINTSLICE = Kind("EndpointSlice", endpoints.endpointslice_validate, endpoints.endpointslice_validate_update,
                     defaults=endpoints.endpointslice_defaults,
                     columns=[NAME_COL, _col("AddressType", "The IP protocol for this slice"), _col("Ports", "The ports for this slice"),
                              _col("Endpoints", "The endpoints for this slice"), AGE_COL],
                     row=endpoints.endpointslice_row)
NAMESPACE = Kind("Namespace", kinds.namespace_validate, prepare_create=kinds.namespace_prepare_create,
                 columns=[NAME_COL, _col("Status", "The status of the namespace"), AGE_COL], row=kinds.namespace_row, has_status=True)
NODE = Kind("Node", kinds.node_validate,
            columns=[NAME_COL, _col("Status", "The status of the node"), _col("Roles", "The roles of the node"), AGE_COL,
                     _col("Version", "Kubelet Version reported by the node."),
                     _col("Internal-IP", "List of internal IPs for the node.", priority=1),
                     _col("External-IP", "List of external IPs for the node.", priority=1),
                     _col("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", priority=1),
                     _col("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", priority=1),
                     _col("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", priority=1)],
            row=kinds.node_row, has_status=True)
EVENT = Kind("Event", kinds.event_validate,
             columns=[_col("Last Seen", "Time when last event was observed"), _col("Type", "Type of this event (Normal, Warning), new types could be added in the future."),
                      _col("Reason", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
                      _col("Object", "The object that this event is about."), _col("Subobject", "The subobject that this event is about.", priority=1),
                      _col("Source", "The component reporting this event. Should be a short machine understandable string.", priority=1),
                      _col("Message", "A human-readable description of the status of this operation."),
                      _col("First Seen", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)", priority=1),
                      _col("Count", "The number of times this event has occurred.", priority=1), _col("Name", "The name of the event", "name", 1)],
             row=kinds.event_row)
SERVICEACCOUNT = Kind("ServiceAccount", kinds.generic_validate(True),
                      columns=[NAME_COL, _col("Secrets", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE_COL],
                      row=kinds.serviceaccount_row)
RESOURCEQUOTA = Kind("ResourceQuota", kinds.quota_validate,
                     columns=[NAME_COL, AGE_COL, _col("Request", "Request represents a minimum amount of cpu/memory that a container may consume."),
                              _col("Limit", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.")],
                     row=kinds.quota_row, has_status=True)
SECRET = Kind("Secret", configdata.secret_validate, configdata.secret_validate_update, defaults=configdata.secret_defaults,
              columns=[NAME_COL, _col("Type", "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"),
                       _col("Data", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4", typ="integer"),
                       AGE_COL],
              row=configdata.secret_row)
CONFIGMAP = Kind("ConfigMap", configdata.configmap_validate, configdata.configmap_validate_update, defaults=configdata.configmap_defaults,
                 columns=[NAME_COL, _col("Data", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.", typ="integer"),
                          AGE_COL],
                 row=configdata.configmap_row)
LIMITRANGE = Kind("LimitRange", kinds.limitrange_validate, defaults=kinds.limitrange_defaults)
_WL_COLS = [_col("Containers", "Names of each container in the template.", priority=1), _col("Images", "Images referenced by each container in the template.", priority=1),
            _col("Selector", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.", priority=1)]
DEPLOYMENT = Kind("Deployment", workloads.deployment_validate, workloads.deployment_validate_update, defaults=workloads.deployment_defaults,
                  prepare_create=workloads.prepare_create,
                  columns=[NAME_COL, _col("Ready", "Number of the pod with ready state"), _col("Up-to-date", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
                           _col("Available", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."), AGE_COL] + _WL_COLS,
                  row=workloads.deployment_row, has_status=True, generation=True)
REPLICASET = Kind("ReplicaSet", workloads.replicaset_validate, workloads.replicaset_validate_update, defaults=workloads.replicaset_defaults,
                  prepare_create=workloads.prepare_create,
                  columns=[NAME_COL, _col("Desired", "Replicas is the number of desired replicas."), _col("Current", "Replicas is the most recently observed number of replicas."),
                           _col("Ready", "The number of ready replicas for this replica set."), AGE_COL] + _WL_COLS,
                  row=workloads.replicaset_row, has_status=True, generation=True)
REPLICATIONCONTROLLER = Kind("ReplicationController", replicationcontrollers.validate, replicationcontrollers.validate_update,
                             defaults=replicationcontrollers.defaults, prepare_create=workloads.prepare_create,
                             columns=[NAME_COL, _col("Desired", "Replicas is the number of desired replicas."),
                                      _col("Current", "Replicas is the most recently observed number of replicas."),
                                      _col("Ready", "The number of ready replicas for this replication controller."), AGE_COL] + _WL_COLS,
                             row=replicationcontrollers.table_row, has_status=True, generation=True)


APISERVICE = Kind("APIService", apiservices.validate, apiservices.validate_update, defaults=apiservices.defaults,
                  prepare_create=apiservices.prepare_create,
                  columns=[NAME_COL, _col("Service", "The reference to the service that hosts this API endpoint."),
                           _col("Available", "Whether this service is available."), AGE_COL],
                  row=apiservices.table_row, has_status=True)


def _doc(definition: str, prop: str) -> str:
    """A field's description from upstream's OpenAPI (the table columns upstream describes with SwaggerDoc)."""
    try:
        return schema.definitions()[definition]["properties"][prop]["description"]
    except KeyError:
        return ""


JOB = Kind("Job", jobs.validate, jobs.validate_update, defaults=jobs.defaults, prepare_create=jobs.prepare_create,
           columns=[NAME_COL, _col("Status", "Status of the job."),
                    _col("Completions", _doc("io.k8s.api.batch.v1.JobStatus", "succeeded")),
                    _col("Duration", "Time required to complete the job."), AGE_COL,
                    _col("Containers", "Names of each container in the template.", priority=1),
                    _col("Images", "Images referenced by each container in the template.", priority=1),
                    _col("Selector", _doc("io.k8s.api.batch.v1.JobSpec", "selector"), priority=1)],
           row=jobs.row, has_status=True, generation=True)
CRONJOB = Kind("CronJob", cronjobs.validate, cronjobs.validate_update, defaults=cronjobs.defaults, prepare_create=cronjobs.prepare_create,
               columns=[NAME_COL, _col("Schedule", _doc("io.k8s.api.batch.v1.CronJobSpec", "schedule")),
                        _col("Timezone", _doc("io.k8s.api.batch.v1.CronJobSpec", "timeZone")),
                        _col("Suspend", _doc("io.k8s.api.batch.v1.CronJobSpec", "suspend"), typ="boolean"),
                        _col("Active", _doc("io.k8s.api.batch.v1.CronJobStatus", "active"), typ="integer"),
                        _col("Last Schedule", _doc("io.k8s.api.batch.v1.CronJobStatus", "lastScheduleTime")), AGE_COL,
                        _col("Containers", "Names of each container in the template.", priority=1),
                        _col("Images", "Images referenced by each container in the template.", priority=1),
                        _col("Selector", _doc("io.k8s.api.batch.v1.JobSpec", "selector"), priority=1)],
               row=cronjobs.row, has_status=True, generation=True)
DAEMONSET = Kind("DaemonSet", workloads.daemonset_validate, workloads.daemonset_validate_update, defaults=workloads.daemonset_defaults,
                 prepare_create=workloads.daemonset_prepare_create,
                 columns=[NAME_COL, _col("Desired", _doc("io.k8s.api.apps.v1.DaemonSetStatus", "desiredNumberScheduled")),
                          _col("Current", _doc("io.k8s.api.apps.v1.DaemonSetStatus", "currentNumberScheduled")),
                          _col("Ready", _doc("io.k8s.api.apps.v1.DaemonSetStatus", "numberReady")),
                          _col("Up-to-date", _doc("io.k8s.api.apps.v1.DaemonSetStatus", "updatedNumberScheduled")),
                          _col("Available", _doc("io.k8s.api.apps.v1.DaemonSetStatus", "numberAvailable")),
                          _col("Node Selector", _doc("io.k8s.api.core.v1.PodSpec", "nodeSelector")), AGE_COL] + _WL_COLS,
                 row=workloads.daemonset_row, has_status=True, generation=True)
CONTROLLERREVISION = Kind("ControllerRevision", workloads.controllerrevision_validate, workloads.controllerrevision_validate_update,
                          columns=[NAME_COL, _col("Controller", "Controller of the object"),
                                   _col("Revision", _doc("io.k8s.api.apps.v1.ControllerRevision", "revision")), AGE_COL],
                          row=workloads.controllerrevision_row)
ROLE = Kind("Role", kinds.rbac_validate(True))
CLUSTERROLE = Kind("ClusterRole", kinds.rbac_validate(False))
_BINDING_COLS = [NAME_COL, _col("Role", "Role references the role that this binding uses."), AGE_COL,
                 _col("Users", "Users in the binding", priority=1), _col("Groups", "Groups in the binding", priority=1),
                 _col("ServiceAccounts", "ServiceAccounts in the binding", priority=1)]
ROLEBINDING = Kind("RoleBinding", kinds.rbac_validate(True), kinds.binding_validate_update(True), columns=_BINDING_COLS, row=kinds.binding_row)
CLUSTERROLEBINDING = Kind("ClusterRoleBinding", kinds.rbac_validate(False), kinds.binding_validate_update(False), columns=_BINDING_COLS, row=kinds.binding_row)
LEASE = Kind("Lease", kinds.generic_validate(True), columns=[NAME_COL, _col("Holder", "Holder identity of the lease"), AGE_COL], row=kinds.lease_row)
PRIORITYCLASS = Kind("PriorityClass", kinds.generic_validate(False),
                     columns=[NAME_COL, _col("Value", "Value of the priority class"), _col("Global-Default", "Is this the global default priority class"), AGE_COL],
                     row=lambda pc: [pc["metadata"]["name"], str(pc.get("value", 0)), str(bool(pc.get("globalDefault", False))).lower(), meta.age(pc["metadata"].get("creationTimestamp"))])

CRD_COLUMNS = [NAME_COL, AGE_COL]


def _crd_row(obj: dict) -> list:
    return [obj["metadata"]["name"], meta.age(obj["metadata"].get("creationTimestamp"))]


_KYVERNO_COLS = [NAME_COL, _col("Admission", typ="boolean"), _col("Background", typ="boolean"), _col("Ready"), AGE_COL, _col("Message")]
CLUSTERPOLICY = Kind("ClusterPolicy", lambda o: kyverno.validate_policy(o, False), defaults=kyverno.defaults,
                     prepare_create=kyverno.prepare, prepare_update=kyverno.prepare_update,
                     columns=_KYVERNO_COLS, row=kyverno.table_row, has_status=True, generation=True)
POLICY = Kind("Policy", lambda o: kyverno.validate_policy(o, True), defaults=kyverno.defaults,
              prepare_create=kyverno.prepare, prepare_update=kyverno.prepare_update,
              columns=_KYVERNO_COLS, row=kyverno.table_row, has_status=True, generation=True)
CONSTRAINTTEMPLATE = Kind("ConstraintTemplate", gatekeeper.validate_template, prepare_create=gatekeeper.prepare_template,
                          prepare_update=gatekeeper.prepare_template, columns=CRD_COLUMNS, row=_crd_row,
                          has_status=True, generation=True)
CONSTRAINT_COLUMNS = [NAME_COL, _col("enforcement-action"), _col("total-violations", typ="integer")]


def constraint_resource(template: dict) -> Resource:
    """The resource a ConstraintTemplate declares, as Gatekeeper's generated CRD serves it."""
    kind = gatekeeper.template_kind(template)
    k = Kind(kind, gatekeeper.validate_constraint, defaults=gatekeeper.constraint_defaults,
             columns=CONSTRAINT_COLUMNS, row=gatekeeper.constraint_row, has_status=True, generation=True)
    return Resource(gatekeeper.CONSTRAINT_GROUP, gatekeeper.CONSTRAINT_VERSION, kind.lower(), kind.lower(), False, k,
                    gatekeeper.definition_name(kind), categories=["constraint", "constraints"], subresources=["status"])


RESOURCES: list[Resource] = [
    Resource("node.k8s.io", "v1", "runtimeclasses", "runtimeclass", False, RUNTIMECLASS, "io.k8s.api.node.v1.RuntimeClass",
             storage_version="v1", to_storage=runtimeclass.to_storage, from_storage=runtimeclass.from_storage),
    Resource("node.k8s.io", "v1beta1", "runtimeclasses", "runtimeclass", False, RUNTIMECLASS, "io.k8s.api.node.v1beta1.RuntimeClass",
             storage_version="v1", to_storage=runtimeclass.to_storage, from_storage=runtimeclass.from_storage),
    Resource("node.k8s.io", "v1alpha1", "runtimeclasses", "runtimeclass", False, RUNTIMECLASS, "io.k8s.api.node.v1alpha1.RuntimeClass",
             storage_version="v1", to_storage=runtimeclass.to_storage, from_storage=runtimeclass.from_storage),
    Resource("", "v1", "namespaces", "namespace", False, NAMESPACE, "io.k8s.api.core.v1.Namespace", ["ns"],
             verbs=["create", "delete", "get", "list", "patch", "update", "watch"], subresources=["finalize", "status"]),
    Resource("", "v1", "services", "service", True, SERVICE, "io.k8s.api.core.v1.Service", ["svc"], ["all"], subresources=["status"]),
    Resource("apiregistration.k8s.io", "v1", "apiservices", "apiservice", False, APISERVICE,
             "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService", subresources=["status"]),
    Resource("", "v1", "replicationcontrollers", "replicationcontroller", True, REPLICATIONCONTROLLER,
             "io.k8s.api.core.v1.ReplicationController", ["rc"], ["all"], subresources=["status", "scale"]),
    Resource("", "v1", "endpoints", "endpoints", True, ENDPOINTS, "io.k8s.api.core.v1.Endpoints", ["ep"]),
    Resource("discovery.k8s.io", "v1", "endpointslices", "endpointslice", True, ENDPOINTSLICE,
             "io.k8s.api.discovery.v1.EndpointSlice"),
    Resource("", "v1", "nodes", "node", False, NODE, "io.k8s.api.core.v1.Node", ["no"], subresources=["proxy", "status"]),
    Resource("", "v1", "pods", "pod", True, POD, "io.k8s.api.core.v1.Pod", ["po"], ["all"], subresources=["attach", "binding", "ephemeralcontainers", "exec", "log", "portforward", "status"]),
    Resource("", "v1", "events", "event", True, EVENT, "io.k8s.api.core.v1.Event", ["ev"]),
    Resource("", "v1", "serviceaccounts", "serviceaccount", True, SERVICEACCOUNT, "io.k8s.api.core.v1.ServiceAccount", ["sa"],
             subresources=["token"]),
    Resource("", "v1", "resourcequotas", "resourcequota", True, RESOURCEQUOTA, "io.k8s.api.core.v1.ResourceQuota", ["quota"], subresources=["status"]),
    Resource("", "v1", "secrets", "secret", True, SECRET, "io.k8s.api.core.v1.Secret"),
    Resource("", "v1", "configmaps", "configmap", True, CONFIGMAP, "io.k8s.api.core.v1.ConfigMap", ["cm"]),
    Resource("", "v1", "limitranges", "limitrange", True, LIMITRANGE, "io.k8s.api.core.v1.LimitRange", ["limits"]),
    Resource("apps", "v1", "deployments", "deployment", True, DEPLOYMENT, "io.k8s.api.apps.v1.Deployment", ["deploy"], ["all"], subresources=["status", "scale"]),
    Resource("apps", "v1", "replicasets", "replicaset", True, REPLICASET, "io.k8s.api.apps.v1.ReplicaSet", ["rs"], ["all"], subresources=["status", "scale"]),
    Resource("apps", "v1", "daemonsets", "daemonset", True, DAEMONSET, "io.k8s.api.apps.v1.DaemonSet", ["ds"], ["all"], subresources=["status"]),
    Resource("apps", "v1", "controllerrevisions", "controllerrevision", True, CONTROLLERREVISION, "io.k8s.api.apps.v1.ControllerRevision"),
    Resource("batch", "v1", "cronjobs", "cronjob", True, CRONJOB, "io.k8s.api.batch.v1.CronJob", ["cj"], ["all"], subresources=["status"]),
    Resource("batch", "v1", "jobs", "job", True, JOB, "io.k8s.api.batch.v1.Job", [], ["all"], subresources=["status"]),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "role", True, ROLE, "io.k8s.api.rbac.v1.Role"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", False, CLUSTERROLE, "io.k8s.api.rbac.v1.ClusterRole"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", True, ROLEBINDING, "io.k8s.api.rbac.v1.RoleBinding"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding", False, CLUSTERROLEBINDING, "io.k8s.api.rbac.v1.ClusterRoleBinding"),
    Resource("coordination.k8s.io", "v1", "leases", "lease", True, LEASE, "io.k8s.api.coordination.v1.Lease"),
    Resource("scheduling.k8s.io", "v1", "priorityclasses", "priorityclass", False, PRIORITYCLASS, "io.k8s.api.scheduling.v1.PriorityClass", ["pc"]),
    Resource("kyverno.io", "v1", "clusterpolicies", "clusterpolicy", False, CLUSTERPOLICY, "io.kyverno.v1.ClusterPolicy", ["cpol"],
             ["kyverno", "policies"], subresources=["status"]),
    Resource("kyverno.io", "v1", "policies", "policy", True, POLICY, "io.kyverno.v1.Policy", ["pol"],
             ["kyverno", "policies"], subresources=["status"]),
    Resource("templates.gatekeeper.sh", "v1", "constrainttemplates", "constrainttemplate", False, CONSTRAINTTEMPLATE,
             "sh.gatekeeper.templates.v1.ConstraintTemplate", subresources=["status"]),
]

# Create-only virtual resources (no storage).
VIRTUAL = {
    ("authorization.k8s.io", "v1", "selfsubjectaccessreviews"): "SelfSubjectAccessReview",
    ("authorization.k8s.io", "v1", "selfsubjectrulesreviews"): "SelfSubjectRulesReview",
    ("authentication.k8s.io", "v1", "selfsubjectreviews"): "SelfSubjectReview",
}

# Read-only resources computed on request, not stored: (kind, namespaced). metrics.k8s.io as metrics-server
# serves it (server/metrics_api.py).
COMPUTED = {
    ("metrics.k8s.io", "v1beta1", "nodes"): ("NodeMetrics", False),
    ("metrics.k8s.io", "v1beta1", "pods"): ("PodMetrics", True),
}

# Preferred version per group (first listed wins), and group order in discovery.
GROUP_ORDER = ["", "apiregistration.k8s.io", "apps", "authentication.k8s.io", "authorization.k8s.io", "batch", "coordination.k8s.io",
               "rbac.authorization.k8s.io", "scheduling.k8s.io", "node.k8s.io", "discovery.k8s.io", "kyverno.io", "templates.gatekeeper.sh", "metrics.k8s.io"]

BY_PATH: dict[tuple[str, str, str], Resource] = {}
BY_GVK: dict[tuple[str, str, str], Resource] = {}
STORAGE: dict[tuple[str, str], Resource] = {}   # (group, plural) -> the storage version's entry
_listeners: list[Callable[[], None]] = []


def _index(r: Resource) -> None:
    BY_PATH[(r.group, r.version, r.plural)] = r
    BY_GVK[(r.group, r.version, r.kind.kind)] = r
    if r.version == (r.storage_version or r.version):
        STORAGE[(r.group, r.plural)] = r


for _r in RESOURCES:
    _index(_r)


def on_change(fn: Callable[[], None]) -> None:
    """Call `fn` whenever resources are added or removed (discovery and OpenAPI caches)."""
    _listeners.append(fn)


def _changed() -> None:
    for fn in _listeners:
        fn()


def add_resource(r: Resource) -> None:
    """Serve a resource defined at run time (a Gatekeeper constraint kind), like a CRD becoming established."""
    remove_resource(r.group, r.plural, notify=False)
    RESOURCES.append(r)
    _index(r)
    if r.group not in GROUP_ORDER:
        GROUP_ORDER.append(r.group)
    _changed()


def remove_resource(group: str, plural: str, notify: bool = True) -> None:
    gone = [r for r in RESOURCES if r.group == group and r.plural == plural]
    if not gone:
        return
    for r in gone:
        RESOURCES.remove(r)
        BY_PATH.pop((r.group, r.version, r.plural), None)
        BY_GVK.pop((r.group, r.version, r.kind.kind), None)
    STORAGE.pop((group, plural), None)
    if group not in {r.group for r in RESOURCES} and group not in {g for g, _, _ in (*VIRTUAL, *COMPUTED)}:
        GROUP_ORDER.remove(group)
    if notify:
        _changed()


def group_versions() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        vs = out.setdefault(r.group, [])
        if r.version not in vs:
            vs.append(r.version)
    for (g, v, _) in (*VIRTUAL, *COMPUTED):
        vs = out.setdefault(g, [])
        if v not in vs:
            vs.append(v)
    return {g: out[g] for g in GROUP_ORDER if g in out}


def resources_in(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


def storage_resource(r: Resource) -> Resource:
    """The resource entry of the storage version (for watch/list of other versions)."""
    return STORAGE[(r.group, r.plural)]
