// The pod sandbox ("pause") process of the test node's images, built by hack/provision.sh.
module etcd-operator.local/tools/pause

go 1.26.0
