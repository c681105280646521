# AKS cluster for training Jobs: Azure AD + Azure RBAC, OIDC issuer and workload identity, a system pool,
# an autoscaled GPU pool tainted nvidia.com/gpu=present:NoSchedule (the launcher's default
# K8S_TOLERATIONS tolerates it) and NVIDIA's device plugin (AKS installs the driver, not the plugin).

locals {
  gpu_profiles = {
    a100 = "Standard_NC24ads_A100_v4" # 1 x A100 80GB
    h100 = "Standard_NC40ads_H100_v5" # 1 x H100 NVL 94GB
  }
  gpu_vm_size = var.gpu_vm_size != "" ? var.gpu_vm_size : local.gpu_profiles[var.gpu_profile]
}

resource "azurerm_resource_group" "this" {
  name     = var.resource_group_name
  location = var.location
  tags     = var.tags
}

resource "azurerm_log_analytics_workspace" "this" {
  name                = "${var.cluster_name}-logs"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = "PerGB2018"
  retention_in_days   = 30
  tags                = var.tags
}

resource "azurerm_kubernetes_cluster" "this" {
  name                = var.cluster_name
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  dns_prefix          = var.cluster_name
  kubernetes_version  = var.kubernetes_version
  sku_tier            = "Standard"
  tags                = var.tags

  oidc_issuer_enabled       = true
  workload_identity_enabled = true
  local_account_disabled    = true
  azure_policy_enabled      = true
  automatic_upgrade_channel = "patch"
  node_os_upgrade_channel   = "NodeImage"

  azure_active_directory_role_based_access_control {
    tenant_id          = data.azurerm_client_config.current.tenant_id
    azure_rbac_enabled = true
  }

  api_server_access_profile {
    authorized_ip_ranges = var.api_server_authorized_ip_ranges
  }

  default_node_pool {
    name                         = "system"
    vm_size                      = var.system_vm_size
    auto_scaling_enabled         = true
    min_count                    = 1
    max_count                    = 3
    os_disk_type                 = "Ephemeral"
    os_disk_size_gb              = 100
    max_pods                     = 50
    only_critical_addons_enabled = false
    node_labels                  = { "training-platform/pool" = "system" }

    upgrade_settings {
      max_surge = "10%"
    }
  }

  identity {
    type = "SystemAssigned"
  }

  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    network_policy      = "cilium"
    network_data_plane  = "cilium"
    load_balancer_sku   = "standard"
  }

  oms_agent {
    log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id
  }

  key_vault_secrets_provider {
    secret_rotation_enabled = true
  }
}

# The identity running terraform administers the cluster (Helm install of the device plugin, kubectl).
resource "azurerm_role_assignment" "terraform_admin" {
  scope                = azurerm_kubernetes_cluster.this.id
  role_definition_name = "Azure Kubernetes Service RBAC Cluster Admin"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_kubernetes_cluster_node_pool" "gpu" {
  name                  = "gpu${var.gpu_profile}"
  kubernetes_cluster_id = azurerm_kubernetes_cluster.this.id
  vm_size               = local.gpu_vm_size
  auto_scaling_enabled  = true
  min_count             = var.gpu_min_nodes
  max_count             = var.gpu_max_nodes
  os_disk_size_gb       = var.gpu_os_disk_size_gb
  priority              = var.gpu_spot ? "Spot" : "Regular"
  eviction_policy       = var.gpu_spot ? "Delete" : null
  spot_max_price        = var.gpu_spot ? -1 : null
  max_pods              = 50
  tags                  = var.tags

  node_labels = {
    "training-platform/pool" = "gpu"
    "training-platform/gpu"  = var.gpu_profile
    "nvidia.com/gpu.present" = "true"
  }

  # Matches the launcher's default K8S_TOLERATIONS. Spot pools also get AKS's own spot taint, which the
  # launcher must then tolerate too (add it to K8S_TOLERATIONS).
  node_taints = ["nvidia.com/gpu=present:NoSchedule"]

  upgrade_settings {
    max_surge = "1"
  }
}

resource "helm_release" "nvidia_device_plugin" {
  name             = "nvidia-device-plugin"
  repository       = "https://nvidia.github.io/k8s-device-plugin"
  chart            = "nvidia-device-plugin"
  version          = var.nvidia_device_plugin_version
  namespace        = "nvidia-device-plugin"
  create_namespace = true
  atomic           = true

  # Run only on GPU nodes; the chart's default tolerations already include nvidia.com/gpu:NoSchedule.
  values = [yamlencode({
    nodeSelector = { "training-platform/pool" = "gpu" }
    tolerations = [
      { key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" },
      { key = "kubernetes.azure.com/scalesetpriority", operator = "Equal", value = "spot", effect = "NoSchedule" },
    ]
  })]

  depends_on = [azurerm_role_assignment.terraform_admin, azurerm_kubernetes_cluster_node_pool.gpu]
}

# --- Workload identity for training pods -------------------------------------------------------------------
resource "azurerm_user_assigned_identity" "training" {
  name                = "${var.cluster_name}-training-pods"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = var.tags
}

resource "azurerm_federated_identity_credential" "training" {
  name                = "${var.cluster_name}-${var.training_namespace}-${var.training_service_account}"
  resource_group_name = azurerm_resource_group.this.name
  parent_id           = azurerm_user_assigned_identity.training.id
  audience            = ["api://AzureADTokenExchange"]
  issuer              = azurerm_kubernetes_cluster.this.oidc_issuer_url
  subject             = "system:serviceaccount:${var.training_namespace}:${var.training_service_account}"
}

resource "azurerm_role_assignment" "training_storage" {
  count = var.storage_account_id != "" ? 1 : 0

  scope                = var.storage_account_id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.training.principal_id
}
