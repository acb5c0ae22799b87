{{/* The chart's name, shortened to a DNS label. */}}
{{- define "cloudvol.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the prefix of every object's name. */}}
{{- define "cloudvol.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cloudvol.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloudvol.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cloudvol.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cloudvol.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cloudvol
{{- end }}

{{- define "cloudvol.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cloudvol.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cloudvol.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Refuses values that cannot work together, with a message that says what to change. */}}
{{- define "cloudvol.validate" -}}
{{- if and .Values.rbac.create (eq .Values.rbac.scope "namespaced") (empty .Values.watchNamespaces) }}
{{- fail "rbac.scope=namespaced grants access per namespace: list them in watchNamespaces (or use rbac.scope=cluster to watch every namespace)" }}
{{- end }}
{{- if ne (len .Values.watchNamespaces) (len (uniq .Values.watchNamespaces)) }}
{{- fail "watchNamespaces lists a namespace twice" }}
{{- end }}
{{- include "cloudvol.validateNamespacesExist" . }}
{{- end }}

{{/*
With rbac.scope=namespaced, the Roles go into the watched namespaces: refuse, before anything
is created, an install whose namespaces do not exist (else helm leaves a failed release that
must be uninstalled before a retry). The release namespace is left out: helm makes it with
--create-namespace, or refuses by itself. `lookup` answers nothing when helm renders without a
cluster (helm template, --dry-run, Argo CD), so a namespace counts as missing only when the
cluster answers for its own namespace "default", which always exists.
*/}}
{{- define "cloudvol.validateNamespacesExist" -}}
{{- if and .Values.rbac.create (eq .Values.rbac.scope "namespaced") }}
{{- $missing := list }}
{{- range $namespace := .Values.watchNamespaces }}
{{- if and (ne $namespace $.Release.Namespace) (not (lookup "v1" "Namespace" "" $namespace)) }}
{{- $missing = append $missing $namespace }}
{{- end }}
{{- end }}
{{- if and $missing (lookup "v1" "Namespace" "" "default") }}
{{- $create := list }}
{{- range $missing }}{{ $create = append $create (printf "kubectl create namespace %s" .) }}{{ end }}
{{- fail (printf "rbac.scope=namespaced puts a Role and RoleBinding in each namespace of watchNamespaces, and these do not exist yet: %s. Helm changed nothing: create them first (%s), then run helm again" (join ", " $missing) (join "; " $create)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
What the operator does in the namespaces it watches (the contract in docs/install.md):
its three kinds, their status and finalizers; credentials Secrets, read and marked with the
finalizer cloudvol.dev/credentials-in-use while objects still need them (never listed or
watched); and Events.
*/}}
{{- define "cloudvol.rules" -}}
- apiGroups: ["cloudvol.dev"]
  resources: ["volumes", "volumeimages", "imageshares"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["cloudvol.dev"]
  resources: ["volumes/status", "volumeimages/status", "imageshares/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["cloudvol.dev"]
  resources: ["volumes/finalizers", "volumeimages/finalizers", "imageshares/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
