"""Run with .venv-storage's python: give moto's server (started with INITIAL_NO_AUTH_ACTION_COUNT) an IAM
user allowed everything, and print its access key as JSON. From then on moto checks signatures."""

import json
import sys

import boto3

endpoint = sys.argv[1]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                   aws_secret_access_key="setup")
iam.create_user(UserName="connector")
iam.put_user_policy(UserName="connector", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="connector")["AccessKey"]
print(json.dumps({"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}))
