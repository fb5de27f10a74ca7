{{/* The labels of every object: deploy/base's, and Helm's. */}}
{{- define "imagedrop.labels" -}}
app.kubernetes.io/name: imagedrop
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Host paths and the in-pod socket directory of the flavour. */}}
{{- define "imagedrop.flavour" -}}
{{- $f := dict
  "containerd" (dict "mount" "/run/containerd" "root" "/var/lib/containerd")
  "k3s" (dict "mount" "/run/k3s/containerd" "root" "/var/lib/rancher/k3s/agent/containerd")
  "rke2" (dict "mount" "/run/k3s/containerd" "root" "/var/lib/rancher/rke2/agent/containerd") -}}
{{- $v := get $f .Values.flavour -}}
{{- if not $v -}}
{{- fail (printf "flavour %q: want containerd, k3s or rke2" .Values.flavour) -}}
{{- end -}}
{{- $c := .Values.containerd -}}
{{- toJson (dict
  "mount" $v.mount
  "socketDir" (default $v.mount $c.socketDir)
  "address" (printf "%s/%s" $v.mount $c.socket)
  "root" (default $v.root $c.root)) -}}
{{- end }}

{{- define "imagedrop.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The Secret holding the docker config.json of --pull-auth, if any. */}}
{{- define "imagedrop.pullAuthSecret" -}}
{{- if .Values.pullAuth.existingSecret -}}
{{ .Values.pullAuth.existingSecret }}
{{- else if .Values.pullAuth.dockerConfigJson -}}
imagedrop-pull-auth
{{- end -}}
{{- end }}

{{/* The socket mount, the same in the DaemonSet and the unpin hook. */}}
{{- define "imagedrop.socketMount" -}}
{{- $fl := include "imagedrop.flavour" . | fromJson -}}
- name: containerd
  mountPath: {{ $fl.mount }}
  readOnly: true
  mountPropagation: HostToContainer
{{- end }}

{{- define "imagedrop.socketVolume" -}}
{{- $fl := include "imagedrop.flavour" . | fromJson -}}
- name: containerd
  hostPath:
    path: {{ $fl.socketDir }}
    type: Directory
{{- end }}

{{/*
The volume source of the trusted verify keys (a Secret or a ConfigMap), as
JSON, or "" when no keys are configured; it fails on a policy it does not
know or a signature policy without keys.
*/}}
{{- define "imagedrop.verifyKeys" -}}
{{- $v := .Values.verify -}}
{{- if not (has (toString $v.policy) (list "off" "checksum" "signature")) -}}
{{- fail (printf "verify.policy %q: want off, checksum or signature" (toString $v.policy)) -}}
{{- end -}}
{{- if and $v.keys.secretName $v.keys.configMapName -}}
{{- fail "verify.keys: set secretName or configMapName, not both" -}}
{{- else if $v.keys.secretName -}}
{{- dict "secret" (dict "secretName" $v.keys.secretName "defaultMode" 292) | toJson -}}
{{- else if $v.keys.configMapName -}}
{{- dict "configMap" (dict "name" $v.keys.configMapName "defaultMode" 292) | toJson -}}
{{- else if eq (toString $v.policy) "signature" -}}
{{- fail "verify.policy signature needs verify.keys.secretName or verify.keys.configMapName" -}}
{{- end -}}
{{- end -}}

{{/* The volume source of sharedImages as JSON, "" when it is off. */}}
{{- define "imagedrop.sharedVolume" -}}
{{- $s := .Values.sharedImages -}}
{{- if and $s.claimName $s.nfs.server -}}
{{- fail "sharedImages: set claimName or nfs, not both" -}}
{{- else if $s.claimName -}}
{{- toJson (dict "persistentVolumeClaim" (dict "claimName" $s.claimName "readOnly" true)) -}}
{{- else if $s.nfs.server -}}
{{- if not $s.nfs.path -}}
{{- fail "sharedImages.nfs: path is required with server" -}}
{{- end -}}
{{- toJson (dict "nfs" (dict "server" $s.nfs.server "path" $s.nfs.path "readOnly" true)) -}}
{{- end -}}
{{- end }}

{{/* Whether the shared-import slots are on: a shared volume, and slots. */}}
{{- define "imagedrop.sharedSlots" -}}
{{- if and (include "imagedrop.sharedVolume" .) (gt (int .Values.sharedImages.importSlots) 0) -}}
true
{{- end -}}
{{- end }}

{{/* The pod-level part of the user imagedrop runs as: the socket's group
(containerd's [grpc] gid) and the group of its Secret and token volumes, or
nothing when it runs as root. */}}
{{- define "imagedrop.podRunAs" -}}
{{- $sc := .Values.securityContext -}}
{{- if and $sc.runAsNonRoot (eq (int $sc.runAsUser) 0) -}}
{{- fail "securityContext.runAsNonRoot needs a securityContext.runAsUser other than 0" -}}
{{- end -}}
{{- if and (ne (int $sc.runAsUser) 0) (not $sc.supplementalGroups) -}}
{{- fail (printf "securityContext.runAsUser %v cannot reach containerd's socket: set securityContext.supplementalGroups to the gid of containerd's [grpc] gid" $sc.runAsUser) -}}
{{- end -}}
{{- if ne (int $sc.runAsUser) 0 -}}
supplementalGroups: {{ toJson $sc.supplementalGroups }}
fsGroup: {{ $sc.runAsGroup }}
{{- end -}}
{{- end }}

{{/* The container-level part: the same in the DaemonSet and the unpin hook. */}}
{{- define "imagedrop.runAs" -}}
{{- $sc := .Values.securityContext -}}
runAsUser: {{ $sc.runAsUser }}
runAsGroup: {{ $sc.runAsGroup }}
runAsNonRoot: {{ $sc.runAsNonRoot }}
{{- end }}
