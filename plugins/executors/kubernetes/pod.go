package main

import (
	"os"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Labels and names every executor pod, Secret and Lease carries.
const (
	labelRun       = "wiz.run"
	labelComponent = "app.kubernetes.io/component"
	labelManagedBy = "app.kubernetes.io/managed-by"
	componentValue = "executor"
	managedByValue = "wiz"

	executorPort = 7443
	serverName   = "wiz-executor"
	tlsDir       = "/var/run/wiz/tls"
	dataDir      = "/var/lib/wiz"
	tokenKey     = "token"
)

// leaseDuration is how long a pod's Lease stays valid without renewal; its
// backend renews it every leaseDuration/3. A pod whose Lease is older is an
// orphan (its backend, and so its Manager, is gone) and may be collected.
// WIZ_KUBE_LEASE_SECONDS changes it (tests use a few seconds).
var leaseDuration = leaseFromEnv(30 * time.Second)

func leaseFromEnv(def time.Duration) time.Duration {
	if n, err := strconv.Atoi(os.Getenv("WIZ_KUBE_LEASE_SECONDS")); err == nil && n >= 3 {
		return time.Duration(n) * time.Second
	}
	return def
}

// objects are what one executor is made of; all share one name.
type objects struct {
	Pod    *corev1.Pod
	Secret *corev1.Secret
	Lease  *coordinationv1.Lease
}

// podRequest is what makes one executor pod.
type podRequest struct {
	Name, RunID     string
	Config          *config
	Slots           int
	LogLevel        string
	CertPEM, KeyPEM []byte
	Token           string
	Holder          string // identity of the backend process renewing the Lease
	Now             time.Time
	// OrphanTimeout: the executor outlives its Manager this long, for a
	// restarted one to adopt (wiz executor --orphan-timeout).
	OrphanTimeout time.Duration
}

func labels(runID string) map[string]string {
	return map[string]string{labelRun: runID, labelComponent: componentValue, labelManagedBy: managedByValue}
}

// makeObjects builds the Secret, Lease and Pod of one executor.
func makeObjects(r podRequest) objects {
	c := r.Config
	meta := metav1.ObjectMeta{Name: r.Name, Namespace: c.Namespace, Labels: labels(r.RunID)}
	secret := &corev1.Secret{
		ObjectMeta: *meta.DeepCopy(),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{corev1.TLSCertKey: r.CertPEM, corev1.TLSPrivateKeyKey: r.KeyPEM, tokenKey: []byte(r.Token)},
	}
	// A pod whose executor waits for its Manager to come back is not an
	// orphan before that wait is over.
	secs := int32((leaseDuration + r.OrphanTimeout) / time.Second)
	now := metav1.NewMicroTime(r.Now)
	lease := &coordinationv1.Lease{
		ObjectMeta: *meta.DeepCopy(),
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: &r.Holder, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now,
		},
	}
	args := []string{"executor",
		"--listen", "$(POD_IP):" + strconv.Itoa(executorPort),
		"--tls-cert", tlsDir + "/" + corev1.TLSCertKey, "--tls-key", tlsDir + "/" + corev1.TLSPrivateKeyKey,
		"--blob-dir", dataDir + "/blobs", "--work-dir", dataDir + "/work", "--run", r.RunID,
	}
	if r.Slots > 0 {
		args = append(args, "--slots", strconv.Itoa(r.Slots))
	}
	if r.OrphanTimeout > 0 {
		args = append(args, "--orphan-timeout", r.OrphanTimeout.String())
	}
	env := []corev1.EnvVar{
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "WIZ_EXECUTOR_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: r.Name}, Key: tokenKey}}},
	}
	if r.LogLevel != "" {
		env = append(env, corev1.EnvVar{Name: "WIZ_LOG_LEVEL", Value: r.LogLevel})
	}
	mode := int32(0o444) // the image runs as a non-root user; the pod has one container
	noToken := false
	grace := int64(10)
	var pullSecrets []corev1.LocalObjectReference
	for _, s := range c.ImagePullSecrets {
		pullSecrets = append(pullSecrets, corev1.LocalObjectReference{Name: string(s)})
	}
	pod := &corev1.Pod{
		ObjectMeta: *meta.DeepCopy(),
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			ServiceAccountName:            c.ServiceAccount,
			AutomountServiceAccountToken:  &noToken,
			NodeSelector:                  c.NodeSelector,
			Tolerations:                   c.Tolerations,
			ImagePullSecrets:              pullSecrets,
			TerminationGracePeriodSeconds: &grace,
			Volumes: []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: r.Name, DefaultMode: &mode,
				Items: []corev1.KeyToPath{{Key: corev1.TLSCertKey, Path: corev1.TLSCertKey}, {Key: corev1.TLSPrivateKeyKey, Path: corev1.TLSPrivateKeyKey}},
			}}}},
			Containers: []corev1.Container{{
				Name:            "executor",
				Image:           c.Image,
				ImagePullPolicy: corev1.PullPolicy(c.ImagePullPolicy),
				Args:            args,
				Env:             env,
				Ports:           []corev1.ContainerPort{{Name: "executor", ContainerPort: executorPort, Protocol: corev1.ProtocolTCP}},
				Resources:       c.requirements,
				VolumeMounts:    []corev1.VolumeMount{{Name: "tls", MountPath: tlsDir, ReadOnly: true}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(executorPort)}},
					PeriodSeconds: 1, FailureThreshold: 3,
				},
			}},
		},
	}
	return objects{Pod: pod, Secret: secret, Lease: lease}
}
