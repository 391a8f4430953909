output "table_arns" {
  description = "Table ARN by table name (without the prefix)."
  value       = { for k, v in aws_dynamodb_table.this : k => v.arn }
}

output "index_arns" {
  description = "Index ARNs of each table: {table ARN}/index/{index}."
  value = { for k, v in local.tables : k => [
    for i, _ in v.indexes : "${aws_dynamodb_table.this[k].arn}/index/${i}"
  ] }
}
