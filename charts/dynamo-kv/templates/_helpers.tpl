{{/*
Chart name, truncated to 63 characters (the limit of a DNS label and of label values).
*/}}
{{- define "dynamo-kv.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart name>, or the release name alone when it already contains
the chart name. Truncated to 63 characters.
*/}}
{{- define "dynamo-kv.fullname" -}}
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

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "dynamo-kv.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "dynamo-kv.labels" -}}
helm.sh/chart: {{ include "dynamo-kv.chart" . }}
{{ include "dynamo-kv.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "dynamo-kv.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dynamo-kv.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the operator's objects (Deployment, Service, RBAC): <fullname>-operator.
*/}}
{{- define "dynamo-kv.operator.fullname" -}}
{{- printf "%s-operator" (include "dynamo-kv.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Operator labels and selector labels: the common ones plus app.kubernetes.io/component=operator, so
they never select the data-plane pods (component=node) that carry the same name label.
*/}}
{{- define "dynamo-kv.operator.labels" -}}
{{ include "dynamo-kv.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "dynamo-kv.operator.selectorLabels" -}}
{{ include "dynamo-kv.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "dynamo-kv.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dynamo-kv.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "dynamo-kv.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Whether the operator watches every namespace (true) or only the release namespace (false); fails on
any other operator.scope.
*/}}
{{- define "dynamo-kv.clusterScoped" -}}
{{- if eq .Values.operator.scope "cluster" }}true
{{- else if eq .Values.operator.scope "namespace" }}
{{- else }}
{{- fail (printf "operator.scope must be cluster or namespace, not %q" .Values.operator.scope) }}
{{- end }}
{{- end }}
