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
