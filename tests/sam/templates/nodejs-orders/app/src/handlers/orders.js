// Logs each order and reports the messages it could not process (partial batch response).
import { SQSClient } from "@aws-sdk/client-sqs";

export const handler = async (event, context) => {
  const batchItemFailures = [];
  for (const record of event.Records) {
    try {
      const order = JSON.parse(record.body);
      if (order.poison) throw new Error(`cannot process order ${order.id}`);
      console.log("ORDER " + JSON.stringify({
        order, record, stage: process.env.STAGE, fn: context.functionName, sdk: typeof SQSClient,
      }));
    } catch (error) {
      console.error(error);
      batchItemFailures.push({ itemIdentifier: record.messageId });
    }
  }
  return { batchItemFailures };
};
