{{/*
Names, labels and small shared snippets of the Sluice chart.
*/}}

{{/* The chart name, unless nameOverride says otherwise. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base name of every object: fullnameOverride, else the release name when it already contains
the chart name, else "<release>-<chart>". Truncated so that "<fullname>-operator-metrics" fits
in 63 characters.
*/}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sluice.operator.fullname" -}}
{{ include "sluice.fullname" . }}-operator
{{- end }}

{{- define "sluice.api.fullname" -}}
{{ include "sluice.fullname" . }}-api
{{- end }}

{{/* The Secret the API writes the bootstrap platform-admin token to. */}}
{{- define "sluice.api.bootstrapSecretName" -}}
{{- default (printf "%s-bootstrap-token" (include "sluice.api.fullname" .)) .Values.api.bootstrapToken.secretName }}
{{- end }}

{{/* "name-version" of the chart, for the helm.sh/chart label. */}}
{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "operator"). */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects; call like sluice.selectorLabels. */}}
{{- define "sluice.componentLabels" -}}
{{ include "sluice.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
An image reference; call with (dict "ctx" $ "image" .Values.operator.image).
"<registry>/<repository>:<tag>", or "...@<digest>" when a digest is set; the tag defaults to the
global tag, then to the chart's appVersion.
*/}}
{{- define "sluice.image" -}}
{{- $registry := .ctx.Values.image.registry | trimSuffix "/" }}
{{- $repository := .image.repository }}
{{- if $registry }}{{ $repository = printf "%s/%s" $registry $repository }}{{ end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repository .image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (.image.tag | default .ctx.Values.image.tag | default .ctx.Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The ServiceAccount name of a component; call with (dict "ctx" $ "component" "api"). */}}
{{- define "sluice.serviceAccountName" -}}
{{- $sa := index .ctx.Values .component "serviceAccount" }}
{{- if $sa.create }}
{{- default (printf "%s-%s" (include "sluice.fullname" .ctx) .component) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/* The pod security context of every pod of the chart (values: podSecurityContext). */}}
{{- define "sluice.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{/* The container security context of every container (values: containerSecurityContext). */}}
{{- define "sluice.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* The Secret holding the database URL, and its key. */}}
{{- define "sluice.database.secretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- include "sluice.fullname" . }}-database
{{- end }}
{{- end }}

{{- define "sluice.database.secretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretKey }}
{{- else -}}
database-url
{{- end }}
{{- end }}

{{/* The Secret holding the API-token signing key, and its key. */}}
{{- define "sluice.signingKey.secretName" -}}
{{- if .Values.signingKey.existingSecret }}
{{- .Values.signingKey.existingSecret }}
{{- else }}
{{- include "sluice.fullname" . }}-signing-key
{{- end }}
{{- end }}

{{- define "sluice.signingKey.secretKey" -}}
{{- if .Values.signingKey.existingSecret }}
{{- .Values.signingKey.existingSecretKey }}
{{- else -}}
signing-key
{{- end }}
{{- end }}

{{/* Scheduling fields of a pod spec, from a component's values. */}}
{{- define "sluice.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/* imagePullSecrets of every pod. */}}
{{- define "sluice.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rules shared by the chart's pods: DNS, the Kubernetes API, the database. */}}
{{- define "sluice.netpol.dns" -}}
- to:
    {{- toYaml .Values.networkPolicy.dns.to | nindent 4 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
{{- define "sluice.netpol.kubernetesApi" -}}
- to:
    {{- toYaml .Values.networkPolicy.kubernetesApi.to | nindent 4 }}
  ports:
    {{- range .Values.networkPolicy.kubernetesApi.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end }}
{{- define "sluice.netpol.database" -}}
- to:
    {{- toYaml .Values.networkPolicy.database.to | nindent 4 }}
  ports:
    - protocol: TCP
      port: {{ .Values.networkPolicy.database.port }}
{{- end }}
{{- define "sluice.netpol.broker" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.platform.broker.namespace }}
  ports:
    - protocol: TCP
      port: {{ .Values.platform.broker.port }}
{{- end }}
{{- define "sluice.netpol.kafka" -}}
{{- if .Values.platform.kafka.bootstrapServers }}
# The Kafka brokers (Streams on kafka).
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.platform.kafka.namespace }}
  ports:
    - protocol: TCP
      port: {{ .Values.platform.kafka.port }}
{{- end }}
{{- end }}
{{- /*
Kafka settings of the operator and the API: the bootstrap servers and the properties that are
not secret as flags, the secret ones from a Secret into SLUICE_KAFKA_SECRET_PROPERTIES.
*/}}
{{- define "sluice.kafka.args" -}}
{{- with .Values.platform.kafka.bootstrapServers }}
- --kafka-bootstrap-servers={{ . }}
{{- end }}
{{- range $k, $v := .Values.platform.kafka.properties }}
- --kafka-property={{ $k }}={{ $v }}
{{- end }}
{{- end }}
{{- define "sluice.kafka.env" -}}
{{- if and .Values.platform.kafka.bootstrapServers .Values.platform.kafka.propertiesSecret }}
# Secret librdkafka properties (SASL credentials), key=value;key=value.
- name: SLUICE_KAFKA_SECRET_PROPERTIES
  valueFrom:
    secretKeyRef:
      name: {{ .Values.platform.kafka.propertiesSecret }}
      key: properties
{{- end }}
{{- end }}
{{- /*
The broker: identities (NATS operator mode) and TLS, for the operator and the API. Files are
mounted under /var/run/sluice/broker (identities) and /var/run/sluice/broker-tls/<ca|client|worker>.
*/}}
{{- define "sluice.broker.identitiesSecret" -}}
{{- $id := .Values.platform.broker.identities }}
{{- if and $id.generate $id.existingSecret }}
{{- fail "set platform.broker.identities.generate or platform.broker.identities.existingSecret, not both" }}
{{- end }}
{{- if $id.generate }}
{{- printf "%s-broker-identities" (include "sluice.fullname" .) }}
{{- else }}
{{- $id.existingSecret }}
{{- end }}
{{- end }}

{{- /*
The broker's TLS flags of the operator (prefix "broker") or the API (prefix "nats").
*/}}
{{- define "sluice.broker.tlsArgs" -}}
{{- $tls := .ctx.Values.platform.broker.tls }}
{{- if $tls.enabled }}
- --{{ .prefix }}-tls
{{- with $tls.caSecret }}
- --{{ $.prefix }}-tls-ca-file=/var/run/sluice/broker-tls/ca/ca.crt
{{- end }}
{{- with $tls.clientSecret }}
- --{{ $.prefix }}-tls-cert-file=/var/run/sluice/broker-tls/client/tls.crt
- --{{ $.prefix }}-tls-key-file=/var/run/sluice/broker-tls/client/tls.key
{{- end }}
{{- end }}
{{- end }}
{{- define "sluice.broker.tlsMounts" -}}
{{- $tls := .Values.platform.broker.tls }}
{{- if $tls.enabled }}
{{- if $tls.caSecret }}
- name: broker-tls-ca
  mountPath: /var/run/sluice/broker-tls/ca
  readOnly: true
{{- end }}
{{- if $tls.clientSecret }}
- name: broker-tls-client
  mountPath: /var/run/sluice/broker-tls/client
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- define "sluice.broker.tlsVolumes" -}}
{{- $tls := .Values.platform.broker.tls }}
{{- if $tls.enabled }}
{{- with $tls.caSecret }}
- name: broker-tls-ca
  secret:
    secretName: {{ . }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- with $tls.clientSecret }}
- name: broker-tls-client
  secret:
    secretName: {{ . }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}
{{- end }}
