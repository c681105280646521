output "cluster_name" {
  description = "EKS cluster name."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "Kubernetes API server URL."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_ca_certificate" {
  description = "Base64 PEM CA of the API server."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

# Built from the cluster's own attributes (the old recipe read a kubeconfig output its module did not
# have). Authenticates with `aws eks get-token`, i.e. the caller's AWS identity, which needs an EKS access
# entry (the creator and admin_principal_arns have one). Write it with:
#   terraform output -raw kubeconfig > kubeconfig && export KUBECONFIG=$PWD/kubeconfig
output "kubeconfig" {
  description = "kubeconfig (YAML) for administrators; exec-authenticates with the AWS CLI."
  value = yamlencode({
    apiVersion      = "v1"
    kind            = "Config"
    current-context = aws_eks_cluster.this.name
    clusters = [{
      name = aws_eks_cluster.this.name
      cluster = {
        server                     = aws_eks_cluster.this.endpoint
        certificate-authority-data = aws_eks_cluster.this.certificate_authority[0].data
      }
    }]
    contexts = [{
      name = aws_eks_cluster.this.name
      context = {
        cluster = aws_eks_cluster.this.name
        user    = aws_eks_cluster.this.name
      }
    }]
    users = [{
      name = aws_eks_cluster.this.name
      user = {
        exec = {
          apiVersion = "client.authentication.k8s.io/v1beta1"
          command    = "aws"
          args       = ["eks", "get-token", "--region", var.region, "--cluster-name", aws_eks_cluster.this.name, "--output", "json"]
        }
      }
    }]
  })
}

output "training_pod_role_arn" {
  description = "IAM role that training pods (service account training/training-job) assume through EKS Pod Identity."
  value       = aws_iam_role.training.arn
}

output "gpu_taint" {
  description = "Taint of the GPU node group; the launcher's default K8S_TOLERATIONS tolerates it."
  value       = "nvidia.com/gpu=present:NoSchedule"
}
