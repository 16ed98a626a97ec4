# terraform -chdir=terraform/bootstrap apply -var-file=../examples/bootstrap.tfvars
region            = "eu-central-1"
state_bucket_name = "example-org-gitea-tfstate" # globally unique: put your organisation in it
